"""Loading recipe files: every kind of bad file is refused with one line naming the file, the recipe and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aim_infra.common.errors import AimError
from aim_infra.planning.catalogue import load_catalogue_from
from aim_infra.planning.hardware import GpuCatalogue
from aim_infra.planning.model_profile import ModelCatalogue

from .factories import dense, gfx90a, gpu

GPUS = GpuCatalogue(gpus=[gpu(), gfx90a()])
MODELS = ModelCatalogue(models=[dense(id="test/small", aliases=["small"])])


def entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "ok",
        "model": "test/small",
        "gpu": "MI300X",
        "gpu_count": 1,
        "tensor_parallel_size": 1,
        "precision": "bf16",
        "max_model_len": 8192,
        "metric": "throughput",
        "status": "community",
        "provenance": "test",
    }
    base.update(fields)
    return base


def load(tmp_path: Path, *entries: dict[str, Any], text: str | None = None) -> object:
    path = tmp_path / "family.yaml"
    path.write_text(text if text is not None else yaml.safe_dump({"recipes": list(entries)}))
    return load_catalogue_from(tmp_path, gpus=GPUS, models=MODELS)


def refused(tmp_path: Path, *entries: dict[str, Any], text: str | None = None) -> str:
    with pytest.raises(AimError) as error:
        load(tmp_path, *entries, text=text)
    message = str(error.value)
    assert "\n" not in message and "family.yaml" in message
    return message


def test_a_good_file_loads_and_is_indexed_by_canonical_model(tmp_path: Path) -> None:
    catalogue = load(tmp_path, entry(), entry(id="via-alias", model="small"))
    assert [r.id for r in catalogue.for_model("TEST/SMALL")] == ["ok", "via-alias"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"typo_field": 1}, "field recipes.0.typo_field: Extra inputs are not permitted"),
        ({"gpu_count": 2}, "gpu_count 2 must equal tensor_parallel_size 1"),
        ({"precision": "fp4"}, "field recipes.0.precision"),
        ({"status": "great"}, "field recipes.0.status"),
        ({"id": "Has Spaces"}, "field recipes.0.id"),
        ({"vllm_args": {"--max-num-seqs": 8}}, "without leading dashes"),
        ({"vllm_args": {"tensor-parallel-size": 2}}, "set by a recipe field"),
        ({"vllm_args": {"swap-space": 4}}, "flag --swap-space was removed"),
        ({"vllm_args": {"bogus-flag-xyz": 1}}, "vllm_args.bogus-flag-xyz: not a flag of vLLM 0.23.0"),
        ({"vllm_args": {"enable-chunked-prefil": True}}, "vllm_args.enable-chunked-prefil: not a flag of vLLM"),
        ({"vllm_args": {"num-scheduler-steps": 8}}, "num-scheduler-steps was removed"),
        ({"vllm_args": {"dtype": "float8_e4m3fn"}}, "not a valid value"),
        ({"env": {"VLLM_USE_V1": "1"}}, "VLLM_USE_V1 was removed"),
        ({"env": {"VLLM_ATTENTION_BACKEND": "x"}}, "use --attention-backend"),
        ({"env": {"bad name": "x"}}, "not a valid name"),
        ({"gpu": "H100"}, "field gpu: unknown GPU 'H100'"),
        ({"model": "nobody/nothing"}, "not in the bundled model catalogue"),
        ({"max_model_len": 1_000_000}, "exceeds the model's context"),
        ({"gpu": "MI250", "env": {"VLLM_ROCM_USE_AITER": "1"}}, "AITER is not available on gfx90a"),
        ({"gpu": "MI250", "precision": "fp8", "vllm_args": {"quantization": "fp8"}}, "no fp8 path"),
        ({"gpu": "MI250", "kv_cache_dtype": "fp8"}, "no fp8 KV cache"),
        ({"precision": "fp8"}, "needs --quantization fp8"),
        ({"precision": "mxfp4"}, "cannot be served in mxfp4"),
        ({"gpu_count": 16, "tensor_parallel_size": 16}, "exceeds the 8 MI300X of one node"),
        ({"gpu_count": 3, "tensor_parallel_size": 3}, "does not divide the 32 attention heads"),
        ({"gpu": "MI250", "max_model_len": 131072, "gpu_memory_utilization": 0.5}, "does not fit 1 × MI250"),
    ],
)
def test_bad_recipe_is_refused_with_one_line(tmp_path: Path, fields: dict[str, Any], expected: str) -> None:
    assert expected in refused(tmp_path, entry(**fields))


def test_duplicate_ids_name_both_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"recipes": [entry()]}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"recipes": [entry()]}))
    with pytest.raises(AimError, match=r"b\.yaml: recipe ok: id already used in .*a\.yaml"):
        load_catalogue_from(tmp_path, gpus=GPUS, models=MODELS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("recipes: [", "family.yaml: line"),
        ("- just a list", "expected a mapping at the top level"),
        ("recipes: []", "field recipes"),
        ("other: 1", "field recipes: required but missing"),
        ("recipes:\n  - 7", "field recipes.0"),
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refused(tmp_path, text=text)


def test_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AimError, match="no recipe files"):
        load_catalogue_from(tmp_path, gpus=GPUS, models=MODELS)
