"""Property: any recipe file, valid or malformed, loads or is refused with exactly one AimError line naming the file.

Valid recipes come from the shipped catalogue and from the generator over every bundled model × GPU (kept only when
they pass the catalogue's own checks); they are then mutated in structured ways (missing, extra and mistyped fields,
removed vLLM flags and variables from recipes/vllm.yaml, AITER on gfx90a, absurd numbers, duplicate ids) or the
file text itself is broken (malformed YAML, non-mapping top level, binary junk, empty file)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aim_infra.common.errors import AimError
from aim_infra.planning.catalogue import RecipeCatalogue, check_recipe, load_catalogue_from
from aim_infra.planning.generation import generate, generated_precision, load_generation_rules, tensor_parallel_options
from aim_infra.planning.hardware import load_gpus
from aim_infra.planning.model_profile import load_model_catalogue
from aim_infra.planning.paths import CATALOGUE_DIR
from aim_infra.planning.precision import KV_CACHE_DTYPES, PRECISIONS
from aim_infra.planning.recipe import STRUCTURAL_FLAGS, Recipe
from aim_infra.planning.vllm_rules import load_vllm_rules

GPUS = load_gpus()
MODELS = load_model_catalogue()
RULES = load_vllm_rules()
GFX90A = [g.name for g in GPUS.gpus if g.arch == "gfx90a"]
GPU_NAMES = [name for g in GPUS.gpus for name in (g.name, g.name.lower(), *g.aliases)]
MODEL_NAMES = [name for m in MODELS.models for name in (m.id, m.id.upper(), *m.aliases)]
FIELDS = list(Recipe.model_fields)


def shipped_entries() -> list[dict[str, Any]]:
    return [
        entry for path in sorted(CATALOGUE_DIR.glob("*.yaml")) for entry in yaml.safe_load(path.read_text())["recipes"]
    ]


def generated_entries() -> list[dict[str, Any]]:
    """A generated recipe for every bundled model × GPU × tensor-parallel size that passes the catalogue's checks."""
    rules = load_generation_rules()
    pool = []
    for profile in MODELS.models:
        for gpu in GPUS.gpus:
            chosen = generated_precision(profile, gpu, "auto")
            if isinstance(chosen, str):
                continue
            for tp in tensor_parallel_options(profile, gpu, gpu.gpus_per_node):
                length = min(8192, profile.max_context)
                recipe = generate(profile, gpu, tp, chosen[0], chosen[1], length, "throughput", rules)
                try:
                    check_recipe(recipe, "pool", GPUS, MODELS, RULES)
                except AimError:
                    continue
                pool.append(recipe.model_dump(mode="json", exclude_defaults=True))
    return pool


VALID = shipped_entries() + generated_entries()

ABSURD_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    2,
    3,
    7,
    65,
    255,
    256,
    10**6,
    10**30,
    0.5,
    0.31,
    0.98,
    0.99,
    1.5,
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    True,
    "8",
    "eight",
    "",
]
JUNK_VALUES: list[Any] = [
    None,
    "",
    " ",
    "x",
    "auto",
    [],
    ["a"],
    {},
    {"a": 1},
    0,
    -7,
    3.25,
    True,
    False,
    "é日本🚀",
    "a" * 300,
    "line one\nline two",
]


# --------------------------------------------------------------------------------------------------------------------
# Structured mutations of one recipe entry


@st.composite
def mutated_entry(draw: st.DrawFn, clean: bool) -> dict[str, Any]:
    entry = dict(draw(st.sampled_from(VALID)))
    entry["vllm_args"] = dict(entry.get("vllm_args") or {})
    entry["env"] = dict(entry.get("env") or {})
    for _ in range(0 if clean else draw(st.integers(0, 3))):
        mutation = draw(st.sampled_from(MUTATIONS))
        mutation(draw, entry)
        event("mutation", mutation.__name__)
    for field in ("vllm_args", "env"):
        if entry.get(field) == {} and draw(st.booleans()):
            del entry[field]
    return entry


def table(entry: dict[str, Any], field: str) -> dict[Any, Any]:
    """entry[field] as a mapping to add to (replacing whatever an earlier mutation left there)."""
    if not isinstance(entry.get(field), dict):
        entry[field] = {}
    return entry[field]


def drop_field(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    entry.pop(draw(st.sampled_from(FIELDS)), None)


def extra_field(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    name = draw(
        st.one_of(
            st.sampled_from(["gpus", "tp", "vllm_arg", "Model", "comment", "tensor_parallel"]), st.text(max_size=12)
        )
    )
    entry[name] = draw(st.sampled_from(JUNK_VALUES))


def wrong_type(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    entry[draw(st.sampled_from(FIELDS))] = draw(st.sampled_from(JUNK_VALUES + ABSURD_NUMBERS))


def absurd_number(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    field = draw(
        st.sampled_from(
            ["gpu_count", "tensor_parallel_size", "pipeline_parallel_size", "max_model_len", "gpu_memory_utilization"]
        )
    )
    entry[field] = draw(st.one_of(st.sampled_from(ABSURD_NUMBERS), st.integers(-(10**12), 10**12), st.floats()))


def reshape_parallelism(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    tp = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 16]))
    pp = draw(st.sampled_from([1, 2, 4]))
    entry.update(
        tensor_parallel_size=tp, pipeline_parallel_size=pp, gpu_count=tp * pp + draw(st.sampled_from([0, 0, 1]))
    )


def removed_flag(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    flag = draw(st.sampled_from(RULES.removed_flags)).name.removeprefix("--")
    table(entry, "vllm_args")[flag] = draw(st.sampled_from([True, 4, "8", 0.5]))


def removed_variable(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    table(entry, "env")[draw(st.sampled_from(RULES.removed_env)).name] = draw(st.sampled_from(["1", "0", "TRITON"]))


def invalid_flag_value(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    flag = draw(st.sampled_from(sorted(RULES.invalid_flag_values)))
    prefix = draw(st.sampled_from(RULES.invalid_flag_values[flag]))
    table(entry, "vllm_args")[flag] = prefix + draw(st.sampled_from(["", "_e4m3fn", "_e5m2"]))


def aiter_on_gfx90a(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    entry["gpu"] = draw(st.sampled_from(GFX90A))
    table(entry, "env")[
        draw(st.sampled_from(["VLLM_ROCM_USE_AITER", "VLLM_ROCM_USE_AITER_MOE", "VLLM_ROCM_USE_AITER_MHA"]))
    ] = draw(st.sampled_from(["1", "0", "true"]))


def structural_flag(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    table(entry, "vllm_args")[draw(st.sampled_from(STRUCTURAL_FLAGS))] = draw(st.sampled_from([1, 8, "x", True]))


def bad_flag(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    name = draw(
        st.sampled_from(["--max-num-seqs", "Max-Num-Seqs", "max_num_seqs", "", "a b", "-", "x--y", "é", 8, True, None])
    )
    table(entry, "vllm_args")[name] = draw(st.sampled_from([True, False, 1, "v", None, [1], {"a": 1}]))


def false_switch(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    table(entry, "vllm_args")[
        draw(st.sampled_from(["enforce-eager", "enable-prefix-caching", "trust-remote-code"]))
    ] = False


def scheduler_limit(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    flag = draw(st.sampled_from(["max-num-seqs", "max-num-batched-tokens"]))
    table(entry, "vllm_args")[flag] = draw(
        st.one_of(
            st.sampled_from([0, -5, 1, 10**6, 10**30, 10**400, math.inf, -math.inf, math.nan, "abc", "64", True, 1.5]),
            st.integers(-(10**9), 10**9),
        )
    )


def env_junk(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    name = draw(st.sampled_from(["bad name", "lower", "1ABC", "", "OK_NAME", "É", 1, False]))
    table(entry, "env")[name] = draw(st.sampled_from(["1", 1, None, ["x"], True, ""]))


def rename_model_or_gpu(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    if draw(st.booleans()):
        entry["model"] = draw(st.sampled_from([*MODEL_NAMES, "nobody/nothing", "", " ", "Qwen/Qwen3-8B "]))
    else:
        entry["gpu"] = draw(st.sampled_from([*GPU_NAMES, "H100", "MI300", "mi-300-x", "", "AMD Instinct MI300X"]))


def formats(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    field = draw(st.sampled_from(["precision", "kv_cache_dtype", "metric", "status"]))
    entry[field] = draw(
        st.sampled_from([*PRECISIONS, *KV_CACHE_DTYPES, "throughput", "latency", "validated", "fp4", "FP8", ""])
    )
    if entry.get("precision") == "fp8" and draw(st.booleans()):
        table(entry, "vllm_args")["quantization"] = draw(st.sampled_from(["fp8", "ptpc_fp8", "awq"]))


def context_length(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    profile = MODELS.find(str(entry.get("model", ""))) if isinstance(entry.get("model"), str) else None
    context = profile.max_context if profile else 32768
    entry["max_model_len"] = draw(st.sampled_from([context, context + 1, context * 2, 255, 256, 1024]))


def bad_id(draw: st.DrawFn, entry: dict[str, Any]) -> None:
    entry["id"] = draw(st.sampled_from(["Has Spaces", "", "-lead", "a" * 121, "é", "UPPER", "ok.id_1-2", 7, None]))


MUTATIONS = [
    drop_field,
    extra_field,
    wrong_type,
    absurd_number,
    reshape_parallelism,
    removed_flag,
    removed_variable,
    invalid_flag_value,
    aiter_on_gfx90a,
    structural_flag,
    bad_flag,
    false_switch,
    scheduler_limit,
    env_junk,
    rename_model_or_gpu,
    formats,
    context_length,
    bad_id,
]


# --------------------------------------------------------------------------------------------------------------------
# Whole files


@st.composite
def recipe_document(draw: st.DrawFn, index: int, clean: bool = False) -> dict[str, Any]:
    entries = draw(st.lists(mutated_entry(clean), min_size=1, max_size=3))
    for number, entry in enumerate(entries):
        if isinstance(entry.get("id"), str) and (clean or draw(st.integers(0, 9)) > 0):  # 10 %: keep ids (duplicates)
            entry["id"] = f"{entry['id']}-f{index}-{number}"[:120]
    return {"recipes": entries}


def dump(document: object) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


@st.composite
def broken_text(draw: st.DrawFn, text: str) -> bytes:
    """The YAML text of a valid document, broken at the text level."""
    position = draw(st.integers(0, max(len(text) - 1, 0)))
    how = draw(st.integers(0, 9))
    if how == 0:
        broken = text[:position]  # truncated
    elif how == 1:
        broken = (
            text[:position]
            + draw(st.sampled_from([":", "\t", "[", "{", "- ", "'", '"', "&", "*", "!", "%", "|"]))
            + text[position:]
        )
    elif how == 2:
        broken = text.replace(":", "", 1 + position % 3)
    elif how == 3:
        broken = text.replace("  ", "\t")
    elif how == 4:
        broken = "%YAML 9.9\n---\n" + text
    elif how == 5:
        broken = text + "\n" + text  # two copies of every key at the top level (the second wins in PyYAML)
    elif how == 6:
        broken = text.replace("\n", "\r\n")
    elif how == 7:
        return "\ufeff".encode() + text.encode()
    elif how == 8:
        return text.encode("utf-16")
    else:
        broken = text + "\n---\nrecipes: []\n"  # a second document
    return broken.encode("utf-8", "surrogatepass")


SPECIAL_FILES = [
    b"",
    b"\n",
    b"---\n",
    b"null",
    b"~",
    b"recipes:",
    b"recipes: null",
    b"recipes: []",
    b"recipes: {}",
    b"recipes: 7",
    b"recipes: [7]",
    b"recipes: [[]]",
    b"recipes: [null]",
    b"recipes: 'a string'",
    b"- just a list",
    b"just a scalar",
    b"42",
    b"3.5",
    b"true",
    b"recipes: !!python/object/apply:os.system ['true']",
    b"recipes: !!binary aGVsbG8=",
    b"recipes: [2020-01-01]",
    b"recipes: &a [*a]",
    b"a: &a [*a, *a, *a]\nb: [*a, *a, *a]\nc: [*b, *b, *b]\nrecipes: [*c]",
    b"recipes: [{<<: {id: x}}]",
    b"? [complex, key]\n: value",
    b"{1: 2, true: 3, null: 4}",
    b"recipes:\n  - id: x\n\tmodel: y",
    b"\x00\x01\x02",
    b"\xff\xfe\xfd",
    b"recipes: [\x85]",
    b"recipes: '\xe2\x80\xa8'",
    b"recipes:\n- gpu_count: " + b"9" * 5000,
    b"recipes:\n- max_model_len: 1" + b"0" * 400,
]


@st.composite
def recipe_file(draw: st.DrawFn, index: int) -> bytes:
    """One file's bytes: a mutated document, a broken one, a special case, nesting, binary junk."""
    kind = draw(st.integers(0, 19))
    if kind <= 11:
        return dump(draw(recipe_document(index))).encode()
    if kind <= 13:
        return draw(broken_text(dump(draw(recipe_document(index)))))
    if kind <= 15:
        return draw(st.sampled_from(SPECIAL_FILES))
    if kind == 16:
        # non-mapping or odd top level built from valid entries
        entries = draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=2))
        return dump(
            draw(st.sampled_from([entries, entries[0], {"recipes": entries, "extra": 1}, {"recipe": entries}]))
        ).encode()
    if kind == 17:
        # ~30000 deep would crash the interpreter inside libyaml if the loader's nesting guard ever failed: that case
        # runs in a subprocess in test_regressions.py, so the depth here stays well below it.
        depth = draw(st.integers(1, 3000))
        return draw(st.sampled_from(["[" * depth + "]" * depth, "recipes: " + "[" * depth + "]" * depth])).encode()
    if kind == 18:
        return draw(st.binary(max_size=300))
    return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")


FILE_NAMES = ["family.yaml", "a b.yaml", "ünïcode.yaml", "z-last.yaml", ".hidden.yaml"]


@st.composite
def recipe_directory(draw: st.DrawFn) -> dict[str, bytes]:
    """1-3 files; 30 % of the time all of them valid (so loading succeeds often enough to be checked too)."""
    names = draw(st.lists(st.sampled_from(FILE_NAMES), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 9)) < 3:
        return {name: dump(draw(recipe_document(index, clean=True))).encode() for index, name in enumerate(names)}
    return {name: draw(recipe_file(index)) for index, name in enumerate(names)}


# --------------------------------------------------------------------------------------------------------------------
# The property


def outcome(directory: Path, files: dict[str, bytes]) -> tuple[str, object]:
    try:
        catalogue = load_catalogue_from(directory, gpus=GPUS, models=MODELS)
    except AimError as error:
        assert type(error) is AimError
        message = str(error)
        assert message and message.strip() == message and len(message.splitlines()) == 1, repr(message)
        assert any(name in message for name in files), f"the error names none of {sorted(files)}: {message!r}"
        return "error", message
    assert isinstance(catalogue, RecipeCatalogue) and catalogue.recipes
    return "loaded", sorted(catalogue.by_id)


def parsed(files: dict[str, bytes]) -> list[object]:
    documents = []
    for raw in files.values():
        try:
            documents.append(yaml.load(raw.decode("utf-8"), Loader=yaml.CSafeLoader))
        except (UnicodeDecodeError, yaml.YAMLError, RecursionError):
            continue
    return documents


# Examples, deadline, randomness and database come from the profile tests/conftest.py loads (quick by default, ci's
# 1000 random examples under AIM_TESTS_FULL=1). The autouse sealed_off fixture only isolates, so one per test (not
# per example) is enough; large and slow examples are the point of a fuzz test.
FUZZ = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(files=recipe_directory())
def test_any_recipe_file_loads_or_is_refused_with_one_line_naming_it(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="aim-recipe-fuzz-") as folder:
        directory = Path(folder)
        for name, raw in files.items():
            (directory / name).write_bytes(raw)
        first = outcome(directory, files)
        # The same files again (now through the parsed-YAML cache) must give the same answer.
        second = outcome(directory, files)
    assert first == second, f"first load: {first}; second load (from the parse cache): {second}"
    event("outcome", first[0])


def test_the_valid_pool_is_valid_and_covers_every_gpu(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(dump({"recipes": [{**e, "id": f"{e['id']}-{i}"} for i, e in enumerate(VALID)]}))
    catalogue = load_catalogue_from(tmp_path, gpus=GPUS, models=MODELS)
    assert len(catalogue.recipes) == len(VALID)
    assert {r.gpu for r in catalogue.recipes} == {g.name for g in GPUS.gpus}
