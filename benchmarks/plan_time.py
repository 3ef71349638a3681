"""Benchmark: import and `run_stack` time of the offline plan, dict manifests (KubernetesObject) vs generated classes.

For each stack (dev, prod) and each way of declaring the Kubernetes objects, every sample is a fresh Python process:

* import: the modules `__main__.py` imports before it declares anything, plus, for the generated classes, the
  pulumi_kubernetes modules of the classes the stack declares (`pulumi_kubernetes.apps.v1`, ...).
* run_stack: `aim_infra.stack.plan.run_stack(stack)` from a cold start, everything the program imports included.

"generated" swaps KubernetesObject and HelmRelease, in the measuring process only, for factories that build the same
object with pulumi_kubernetes' generated class (the same ownership annotation, ownership-gate entry and secret
wrapping; the class adds its own aliases, version and secret outputs), as tests/stack/components/test_kube.py
re-declares recorded objects. The product's code path is not changed. Both variants must declare the same Kubernetes
objects with the same inputs, or the benchmark stops. Modes alternate run by run so machine load hits both alike.

    python benchmarks/plan_time.py [--repeat 5] [--stack dev --stack prod]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODES = ("dict", "generated")
MEASURES = ("import", "run_stack")


# --- in the measured process ----------------------------------------------------------------------------------------


def program_imports() -> list[str]:
    """The modules `__main__.py` imports at its top level, in its order."""
    modules: list[str] = []
    for node in ast.parse((ROOT / "__main__.py").read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
    return modules


def generated_class(token: str) -> Any:
    """`kubernetes:apps/v1:Deployment` → pulumi_kubernetes.apps.v1.Deployment; a kind with no generated class (a
    CRD's, such as monitoring.coreos.com) → apiextensions.CustomResource (as test_kube.generated_class)."""
    import pulumi_kubernetes

    _, api_version, kind = token.split(":")
    group, version = api_version.split("/")
    module = getattr(pulumi_kubernetes, group.split(".")[0], None)
    if module is None:
        return pulumi_kubernetes.apiextensions.CustomResource
    return getattr(getattr(module, version), kind)


def generated_kwargs(cls: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """The class's keyword arguments for a camelCase manifest: top-level names through the class's own py→wire
    table, nested values as they are (as test_kube.generated_kwargs)."""
    import pulumi_kubernetes

    from aim_infra.stack import pulumi_internals

    if cls is pulumi_kubernetes.apiextensions.CustomResource:
        return {key.replace("apiVersion", "api_version"): value for key, value in manifest.items()}
    module = sys.modules[cls.__module__]
    args = getattr(module, f"{cls.__name__}InitArgs", None) or getattr(module, f"{cls.__name__}Args")
    to_py = {wire: py for py, wire in pulumi_internals.input_property_names(args).items()}
    return {to_py[key]: value for key, value in manifest.items() if key not in ("apiVersion", "kind")}


def use_generated_classes() -> None:
    """Swap kube.KubernetesObject and kube.HelmRelease for factories over the generated classes, in this process. The
    components bind the two names when the program first imports them, which is after this."""
    import pulumi

    from aim_infra.stack.components import kube, ownership_gate

    def gated(manifest: dict[str, Any] | None, opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions | None:
        gate = ownership_gate.CURRENT.get()
        if gate is None:
            return opts
        if manifest is not None:
            gate.track(manifest)
        return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[gate]))

    class GeneratedObject:
        """Stands in for KubernetesObject: builds the generated class's object (a class, not a function, since the
        components' annotations name it in `X | None` unions that the SDK evaluates)."""

        def __new__(cls, name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> Any:
            manifest = kube.owned(manifest)
            opts = gated(manifest, opts)
            if manifest["kind"] == "Secret" and manifest["apiVersion"] == "v1":
                secret = {
                    k: pulumi.Output.secret(manifest[k]) for k in kube.SECRET_FIELDS if manifest.get(k) is not None
                }
                manifest = {**manifest, **secret}
            generated = generated_class(kube.type_token(manifest["apiVersion"], manifest["kind"]))
            return generated(name, opts=opts, **generated_kwargs(generated, manifest))

    class GeneratedRelease:
        """Stands in for HelmRelease: builds pulumi_kubernetes.helm.v3.Release."""

        def __new__(cls, name: str, spec: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> Any:
            generated = generated_class(kube.HELM_RELEASE)
            return generated(name, opts=gated(None, opts), **generated_kwargs(generated, spec))

    kube.KubernetesObject = GeneratedObject  # type: ignore[assignment,misc]
    kube.HelmRelease = GeneratedRelease  # type: ignore[assignment,misc]


def fingerprint(result: Any) -> str:
    """The Kubernetes objects a plan declares, by type, name and inputs: equal for both variants or the comparison
    is of two different programs."""
    objects = sorted(
        json.dumps([r.type, r.name, r.inputs], sort_keys=True, default=str)
        for r in result.resources
        if r.type.startswith("kubernetes:")
    )
    return f"{len(objects)} objects, sha256 {hashlib.sha256(''.join(objects).encode()).hexdigest()[:16]}"


def child(measure: str, mode: str, stack: str, generated_modules: list[str]) -> dict[str, Any]:
    """One sample, in a fresh process."""
    import importlib

    start = time.perf_counter()
    if measure == "import":
        for module in program_imports() + (generated_modules if mode == "generated" else []):
            importlib.import_module(module)
        return {"seconds": time.perf_counter() - start}
    if mode == "generated":
        use_generated_classes()
    from aim_infra.stack.plan import run_stack

    result = run_stack(stack)
    seconds = time.perf_counter() - start
    if result.error:
        raise SystemExit(f"{stack} ({mode}): {result.error}")
    return {"seconds": seconds, "fingerprint": fingerprint(result)}


# --- the driver -----------------------------------------------------------------------------------------------------


def generated_modules() -> list[str]:
    """The pulumi_kubernetes modules holding the generated classes of the kinds the stacks declare (the alias table
    lists exactly those kinds; test_kube keeps it so)."""
    from aim_infra.stack.components.kube import ALIASES

    return sorted({generated_class(token).__module__.rpartition(".")[0] for token in ALIASES})


def sample(measure: str, mode: str, stack: str, modules: list[str]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", measure, "--mode", mode, "--stack", stack]
    command += [f"--module={module}" for module in modules]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, env=env)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="samples per stack, variant and measure (at least 5)")
    parser.add_argument("--stack", action="append", help="stacks to measure (default: dev and prod)")
    parser.add_argument("--child", choices=MEASURES, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--module", action="append", default=[], help=argparse.SUPPRESS)
    options = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # run as a script, this file's folder is on the path; the project is not
    if options.child:
        print(json.dumps(child(options.child, options.mode, options.stack[0], options.module)))
        return
    if options.repeat < 5:
        parser.error("--repeat: at least 5")
    stacks = options.stack or ["dev", "prod"]
    # Both variants start from compiled bytecode, as on a user's machine (pip compiled the SDKs at install time).
    subprocess.run([sys.executable, "-m", "compileall", "-q", "aim_infra", "__main__.py"], cwd=ROOT, check=True)
    modules = generated_modules()
    print(f"generated-class modules the stacks need: {', '.join(modules)}")
    samples: dict[tuple[str, str, str], list[float]] = {}
    for stack in stacks:
        declared = ""
        for measure in MEASURES:
            for mode in MODES:  # one warm-up each: the file-system cache, not the first sample, pays for cold disks
                sample(measure, mode, stack, modules)
            for _ in range(options.repeat):
                pair = {mode: sample(measure, mode, stack, modules) for mode in MODES}
                for mode, found in pair.items():
                    samples.setdefault((stack, measure, mode), []).append(found["seconds"])
                # Compared pair by pair: the two samples of a pair run back to back on the same code.
                if measure == "run_stack" and pair["dict"]["fingerprint"] != pair["generated"]["fingerprint"]:
                    raise SystemExit(f"{stack}: the variants declared different Kubernetes objects: {pair}")
                declared = pair["dict"].get("fingerprint", declared)
        print(f"{stack}: both variants declare the same Kubernetes objects ({declared})")
    print(f"\n{'stack':<6} {'measure':<10} {'variant':<10} {'median':>8} {'min':>8}   ({options.repeat} runs each)")
    for stack in stacks:
        for measure in MEASURES:
            for mode in MODES:
                times = samples[(stack, measure, mode)]
                print(f"{stack:<6} {measure:<10} {mode:<10} {statistics.median(times):>7.3f}s {min(times):>7.3f}s")
            ratio = statistics.median(samples[(stack, measure, "generated")]) / statistics.median(
                samples[(stack, measure, "dict")]
            )
            print(f"{stack:<6} {measure:<10} {'gen/dict':<10} {ratio:>7.2f}x")


if __name__ == "__main__":
    main()
