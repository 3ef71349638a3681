"""The command line: `python -m aim_infra select | recipes | gpus | plan`, one error line on bad input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .recipes.errors import AimError
from .recipes.precision import PRECISION_WISHES


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a whole number ≥ 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a whole number ≥ 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m aim_infra", description="AIM Engine: vLLM recipes for AMD Instinct GPUs.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    select = commands.add_parser("select", help="choose the serving recipe for a model on a GPU type and explain why")
    select.add_argument("--model", required=True, help="Hugging Face id, bundled catalogue id, or a local model dir")
    select.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) for a Hub model")
    select.add_argument("--gpu", required=True, help="GPU type, e.g. MI300X (see `gpus`)")
    select.add_argument("--gpu-count", required=True, type=positive_int, help="GPUs available on one node")
    select.add_argument("--metric", choices=("latency", "throughput"), default="throughput")
    select.add_argument("--precision", choices=PRECISION_WISHES, default="auto")
    select.add_argument("--max-model-len", type=positive_int, default=None)
    select.add_argument("--recipe", default=None, help="use this catalogue recipe (the manual path)")
    select.add_argument("--json", action="store_true", help="print one JSON object instead of the table")

    recipes = commands.add_parser("recipes", help="list the recipe catalogue")
    recipes.add_argument("--model", default=None, help="filter: model id contains this")
    recipes.add_argument("--gpu", default=None, help="filter: GPU type")
    recipes.add_argument("--json", action="store_true")

    plan = commands.add_parser("plan", help="run the Pulumi program offline under mocks and show what it declares")
    plan.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    plan.add_argument(
        "--config", action="append", default=[], metavar="KEY=VALUE", help="override a config value (repeatable)"
    )
    plan.add_argument("--out", type=Path, default=None, help="write Kubernetes objects and Helm releases here")

    gpus = commands.add_parser("gpus", help="list the GPU catalogue")
    gpus.add_argument("--json", action="store_true")
    return parser


def run_select(args: argparse.Namespace) -> int:
    from .recipes.explain import explain_decision
    from .recipes.hardware import load_gpus
    from .recipes.model_sources import resolve_model
    from .recipes.selection import Selector

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
    )
    if args.json:
        print(json.dumps(decision.summary(), indent=2))
    else:
        print(explain_decision(decision))
    return 0


def run_recipes(args: argparse.Namespace) -> int:
    from .recipes.catalogue import load_catalogue
    from .recipes.explain import explain_catalogue

    catalogue = load_catalogue()
    if args.gpu:
        from .recipes.hardware import load_gpus

        args.gpu = load_gpus().get(args.gpu).name
    if args.json:
        print(json.dumps([r.model_dump() for r in catalogue.filtered(args.model, args.gpu)], indent=2))
    else:
        print(explain_catalogue(catalogue, args.model, args.gpu))
    return 0


def run_plan(args: argparse.Namespace) -> int:
    from .plan import parse_overrides, render, run_stack, write_out

    result = run_stack(args.stack, parse_overrides(args.config))
    if result.error:
        raise AimError(result.error)
    print(render(result))
    if args.out is not None:
        written = write_out(result, args.out)
        print(f"\nWrote {len(written) - 1} Kubernetes objects and helm-releases.yaml to {args.out}")
    return 0


def run_gpus(args: argparse.Namespace) -> int:
    from .recipes.explain import explain_gpus
    from .recipes.hardware import load_gpus

    gpus = load_gpus()
    print(json.dumps([g.model_dump() for g in gpus.gpus], indent=2) if args.json else explain_gpus(gpus))
    return 0


COMMANDS = {"select": run_select, "recipes": run_recipes, "gpus": run_gpus, "plan": run_plan}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except AimError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `… | head` closed the pipe: not an error worth a traceback
        return 0
