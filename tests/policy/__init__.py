"""Tests of the AIM policy pack (policy/): the rules on the stacks' declared objects and on hand-made objects."""
