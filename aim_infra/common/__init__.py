"""Shared by every room (planning, stack, host, pod): contract names, the error base class, one-line CLI parsing.

Standard library only: the pod and host programs import it, and the AIM image copies it."""
