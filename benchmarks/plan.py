"""Benchmark: wall time of `python -m aim_infra plan --stack dev` beside a bare import of the Pulumi SDKs."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BARE_IMPORT = "import pulumi, pulumi_kubernetes, pulumi_docker, pulumi_command"
TARGET_RATIO = 1.5


def wall_times(command: list[str], repeat: int) -> list[float]:
    samples = []
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=env)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stack", default="dev")
    options = parser.parse_args()
    # Both sides start from compiled bytecode, as they do on a user's machine: pip compiled the SDKs at install time,
    # and Python caches the project's own modules on first import -- unless PYTHONDONTWRITEBYTECODE is set (it is on
    # some CI images), so compile the project once up front. Then warm the file-system cache for both.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "aim_infra", "__main__.py"], cwd=ROOT, check=True)
    wall_times([sys.executable, "-c", BARE_IMPORT], 1)
    wall_times([sys.executable, "-m", "aim_infra", "plan", "--stack", options.stack], 1)
    bare = wall_times([sys.executable, "-c", BARE_IMPORT], options.repeat)
    plan = wall_times([sys.executable, "-m", "aim_infra", "plan", "--stack", options.stack], options.repeat)
    bare_median, plan_median = statistics.median(bare), statistics.median(plan)
    ratio = plan_median / bare_median
    print(f'bare `python -c "{BARE_IMPORT}"`: median {bare_median:.2f} s (min {min(bare):.2f}, max {max(bare):.2f})')
    print(
        f"`python -m aim_infra plan --stack {options.stack}`: median {plan_median:.2f} s "
        f"(min {min(plan):.2f}, max {max(plan):.2f})"
    )
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(f"plan / bare import = {ratio:.2f} ({verdict} the ≤ {TARGET_RATIO} target), {options.repeat} runs each")


if __name__ == "__main__":
    main()
