"""The command line: `python -m aim_infra select | estimate | recipes | gpus | plan`, one error line on bad input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from aim_infra.cli_workload import add_workload_flags, workload_from_args
from aim_infra.common.cli import OneLineParser, UsageError
from aim_infra.common.errors import AimError
from aim_infra.planning.precision import KV_CACHE_DTYPES, PRECISION_WISHES
from aim_infra.planning.revision import revision_problem


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a whole number ≥ 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a whole number ≥ 1")
    return value


def hub_revision(text: str) -> str:
    problem = revision_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: {problem}")
    return text


def out_directory(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a directory path, e.g. plan-out")
    return Path(text)


#: What `add_subparsers` returns (argparse names its class privately; the annotation is all that uses the name).
Subcommands = argparse._SubParsersAction


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m aim_infra", description="AIM Engine: vLLM recipes for AMD Instinct GPUs.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _add_select(commands)
    _add_estimate(commands)
    _add_recipes(commands)
    _add_plan(commands)
    _add_gpus(commands)
    _add_calibrate(commands)
    return parser


def _add_select(commands: Subcommands) -> None:
    select = commands.add_parser("select", help="choose the serving recipe for a model on a GPU type and explain why")
    select.add_argument("--model", required=True, help="Hugging Face id, bundled catalogue id, or a local model dir")
    select.add_argument(
        "--revision", type=hub_revision, default=None, help="Hub revision (branch, tag or commit) for a Hub model"
    )
    select.add_argument("--gpu", required=True, help="GPU type, e.g. MI300X (see `gpus`)")
    select.add_argument("--gpu-count", required=True, type=positive_int, help="GPUs available on one node")
    select.add_argument("--metric", choices=("latency", "throughput"), default="throughput")
    select.add_argument("--precision", choices=PRECISION_WISHES, default="auto")
    select.add_argument("--max-model-len", type=positive_int, default=None)
    select.add_argument("--recipe", default=None, help="use this catalogue recipe (the manual path)")
    add_workload_flags(select, required=False)
    select.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _add_estimate(commands: Subcommands) -> None:
    estimate = commands.add_parser(
        "estimate", help="estimate exactly one layout at one workload (replicas = GPUs / (TP × PP)), without choosing"
    )
    estimate.add_argument("--model", required=True, help="Hugging Face id, bundled catalogue id, or a local model dir")
    estimate.add_argument("--revision", type=hub_revision, default=None, help="Hub revision for a Hub model")
    estimate.add_argument("--gpu", required=True, help="GPU type, e.g. MI300X (see `gpus`)")
    estimate.add_argument("--gpu-count", required=True, type=positive_int, help="GPUs of the whole deployment")
    estimate.add_argument("--tensor-parallel-size", required=True, type=positive_int)
    estimate.add_argument("--pipeline-parallel-size", type=positive_int, default=1)
    estimate.add_argument("--precision", choices=PRECISION_WISHES, default="auto", help="weights (auto = checkpoint)")
    estimate.add_argument("--kv-cache-dtype", choices=KV_CACHE_DTYPES, default="auto")
    estimate.add_argument("--max-model-len", type=positive_int, default=None, help="default: input + output tokens")
    estimate.add_argument("--max-num-seqs", type=positive_int, default=None, help="default: vLLM's for the device")
    estimate.add_argument("--max-num-batched-tokens", type=positive_int, default=None)
    add_workload_flags(estimate, required=True)
    estimate.add_argument("--json", action="store_true", help="print one JSON object")


def _add_recipes(commands: Subcommands) -> None:
    recipes = commands.add_parser("recipes", help="list the recipe catalogue")
    recipes.add_argument("--model", default=None, help="filter: model id contains this")
    recipes.add_argument("--gpu", default=None, help="filter: GPU type")
    recipes.add_argument("--json", action="store_true")


def _add_plan(commands: Subcommands) -> None:
    plan = commands.add_parser("plan", help="run the Pulumi program offline under mocks and show what it declares")
    plan.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    plan.add_argument(
        "--config", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable)"
    )
    plan.add_argument(
        "--out",
        type=out_directory,
        default=None,
        help="write Kubernetes objects and Helm releases here: a new or empty directory, or an earlier plan's "
        "(its files are replaced); never the project directory",
    )


def _add_gpus(commands: Subcommands) -> None:
    gpus = commands.add_parser("gpus", help="list the GPU catalogue")
    gpus.add_argument("--json", action="store_true")


def _add_calibrate(commands: Subcommands) -> None:
    calibrate = commands.add_parser("calibrate", help="feed aim:benchmark results to the performance model")
    calibrate_mode = calibrate.add_mutually_exclusive_group(required=True)  # one mode per run
    calibrate_mode.add_argument(
        "--add", type=Path, metavar="RESULT.json", help="turn a live_benchmark result into local measurement entries"
    )
    calibrate_mode.add_argument(
        "--fit", action="store_true", help="refit the constants on the train and local measurements (recipes/)"
    )
    calibrate_mode.add_argument(
        "--report", action="store_true", help="print measured vs estimated for every measurement (Markdown)"
    )
    calibrate.add_argument("--out", type=Path, default=None, help="--add: write here, not measurements/local/")
    calibrate.add_argument("--force", action="store_true", help="--add: overwrite an existing file")


def run_select(args: argparse.Namespace) -> int:
    from aim_infra.planning.explain import explain_decision
    from aim_infra.planning.hardware import load_gpus
    from aim_infra.planning.selection import Selector
    from aim_infra.stack.model_sources import resolve_model

    gpu = load_gpus().get(args.gpu)
    profile = resolve_model(args.model, args.revision)
    decision = Selector().select(
        profile,
        gpu,
        args.gpu_count,
        metric=args.metric,
        precision=args.precision,
        max_model_len=args.max_model_len,
        recipe_id=args.recipe,
        workload=workload_from_args(args),
    )
    if args.json:
        print(json.dumps(decision.summary(), indent=2))
    else:
        print(explain_decision(decision))
    return 0


def run_estimate(args: argparse.Namespace) -> int:
    from aim_infra.planning.hardware import load_gpus
    from aim_infra.planning.layout_estimate import LayoutRequest, describe_estimate, evaluate_layout
    from aim_infra.stack.model_sources import resolve_model

    workload = workload_from_args(args)
    assert workload is not None  # argparse requires the lengths and one load
    gpu = load_gpus().get(args.gpu)
    profile = resolve_model(args.model, args.revision)
    request = LayoutRequest(
        gpu_count=args.gpu_count,
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        precision=args.precision,
        kv_cache_dtype=args.kv_cache_dtype,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
    )
    result = evaluate_layout(profile, gpu, request, workload)
    print(json.dumps(result.as_json(), indent=2) if args.json else describe_estimate(result))
    return 0


def run_recipes(args: argparse.Namespace) -> int:
    from aim_infra.planning.catalogue import load_catalogue
    from aim_infra.planning.explain import explain_catalogue

    catalogue = load_catalogue()
    if args.gpu:
        from aim_infra.planning.hardware import load_gpus

        args.gpu = load_gpus().get(args.gpu).name
    if args.json:
        print(json.dumps([r.model_dump() for r in catalogue.filtered(args.model, args.gpu)], indent=2))
    else:
        print(explain_catalogue(catalogue, args.model, args.gpu))
    return 0


def run_plan(args: argparse.Namespace) -> int:
    from aim_infra.stack.plan import parse_overrides, render, run_stack, write_out

    result = run_stack(args.stack, parse_overrides(args.config))
    if result.error:
        raise AimError(result.error)
    print(render(result))
    if args.out is not None:
        written = write_out(result, args.out)
        print(f"\nWrote {len(written) - 1} Kubernetes objects and helm-releases.yaml to {args.out}")
    return 0


def run_gpus(args: argparse.Namespace) -> int:
    from aim_infra.planning.explain import explain_gpus
    from aim_infra.planning.hardware import load_gpus

    gpus = load_gpus()
    print(json.dumps([g.model_dump() for g in gpus.gpus], indent=2) if args.json else explain_gpus(gpus))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from aim_infra.planning.calibration import refit, report
    from aim_infra.planning.calibration_add import add_result

    if args.fit:
        data = refit(progress=lambda line: print(line, file=sys.stderr))
        print(f"Fitted calibration {data.calibration.version} on {data.calibration.fitted_on}")
        print(report(data=data).split("\n## ")[0].rstrip())
        return 0
    if args.report:
        print(report(), end="")
        return 0
    written, entries = add_result(args.add, out=args.out, force=args.force)
    print(f"Added {len(entries)} measurement(s) (split local) from {args.add} to {written}")
    return 0


COMMANDS = {
    "select": run_select,
    "estimate": run_estimate,
    "recipes": run_recipes,
    "gpus": run_gpus,
    "plan": run_plan,
    "calibrate": run_calibrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        # argparse's own form, one line instead of the usage block: `PROG: error: MESSAGE` and SystemExit(2).
        print(f"{error.prog}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        return COMMANDS[args.command](args)
    except AimError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `… | head` closed the pipe: not an error worth a traceback
        return 0
