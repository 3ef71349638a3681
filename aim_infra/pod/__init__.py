"""Programs that run inside the AIM image (`python3 -m aim_infra.pod.<program>`): the model download and the preflight.
The image copies exactly this package, `aim_infra.common` and the GPU catalogue modules they import."""
