"""Where the bundled data lives: the repository's `recipes/` folder, overridable for tests and packaging."""

from __future__ import annotations

import os
from pathlib import Path

#: The data folder shipped with the project (GPU catalogue, model catalogue, recipe catalogue, vLLM flag rules).
DATA_DIR = Path(os.environ.get("AIM_RECIPES_DIR", Path(__file__).resolve().parents[2] / "recipes"))

GPUS_FILE = DATA_DIR / "gpus.yaml"
MODELS_FILE = DATA_DIR / "models.yaml"
VLLM_RULES_FILE = DATA_DIR / "vllm.yaml"
VLLM_FLAGS_FILE = DATA_DIR / "vllm_flags.yaml"
VLLM_LORA_FILE = DATA_DIR / "vllm_lora.yaml"
VLLM_LORA_RULES_FILE = DATA_DIR / "vllm_lora_rules.yaml"
CATALOGUE_DIR = DATA_DIR / "catalogue"
