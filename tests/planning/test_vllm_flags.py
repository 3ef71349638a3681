"""recipes/vllm_flags.yaml: the flags of the pinned vLLM, matching the base image, covering every recipe's flags."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from aim_infra.planning.catalogue import load_catalogue
from aim_infra.planning.generation import load_generation_rules
from aim_infra.planning.vllm_rules import load_vllm_flags, load_vllm_rules
from aim_infra.stack.settings import DEFAULT_BASE_IMAGE

ROOT = Path(__file__).resolve().parents[2]


def test_the_flag_list_is_for_the_base_images_vllm() -> None:
    flags = load_vllm_flags()
    match = re.search(r"_vllm_([0-9.]+)$", DEFAULT_BASE_IMAGE)
    assert match is not None and flags.vllm_version == match.group(1)
    assert all(f"v{flags.vllm_version}/" in source for source in flags.sources)
    assert len(flags.flags) > 200 and {"trust-remote-code", "max-num-seqs", "api-key"} <= set(flags.flags)
    assert flags.aliases["-tp"] == "tensor-parallel-size"


def test_every_recipe_and_generation_flag_is_known_and_no_removed_flag_is() -> None:
    flags = load_vllm_flags()
    rules = load_vllm_rules()
    used = {flag for recipe in load_catalogue().recipes for flag in recipe.vllm_args}
    used |= {flag for rule in load_generation_rules().rules for flag in rule.vllm_args}
    assert all(flags.canonical(f"--{flag}") == flag.removeprefix("no-") or flags.canonical(f"--{flag}") == flag
               for flag in used), sorted(f for f in used if flags.canonical(f"--{f}") is None)  # fmt: skip
    still_listed = [r.name for r in rules.removed_flags if r.name in flags.flags]
    assert set(still_listed) <= {"cuda-graph-sizes"}, still_listed  # deprecated alias vLLM still parses


def test_the_extraction_script_reads_source_without_importing_it(tmp_path: Path) -> None:
    engine = tmp_path / "vllm" / "engine"
    frontend = tmp_path / "vllm" / "entrypoints" / "openai"
    engine.mkdir(parents=True)
    frontend.mkdir(parents=True)
    (engine / "arg_utils.py").write_text(
        "import torch  # never imported by the script\n"
        "class EngineArgs:\n    enforce_eager: bool = False\n    seed: int | None = None\n"
        "def add(group, kw):\n"
        "    group.add_argument('--enforce-eager', **kw['enforce_eager'])\n"
        "    group.add_argument('--seed', '-s', **kw['seed'])\n"
    )
    (frontend / "cli_args.py").write_text("class FrontendArgs:\n    port: int = 8000\n    enable_x: bool = False\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "extract_vllm_flags.py"), str(tmp_path), "9.9.9", "2026-12-05"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = result.stdout
    assert 'vllm_version: "9.9.9"' in out and "  - enforce-eager" in out and "  - port" in out
    negatable = out.split("negatable:", 1)[1].split("aliases:", 1)[0]
    assert "enforce-eager" in negatable and "enable-x" in negatable and "seed" not in negatable
    assert '"-s": seed' in out
