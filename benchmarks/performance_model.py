"""Benchmark: the performance model's error on every measurement (writes performance_model.md) and its speed."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aim_infra.planning.calibration import evaluate, report, summarise  # noqa: E402
from aim_infra.planning.hardware import load_gpus  # noqa: E402
from aim_infra.planning.measurements import load_measurements  # noqa: E402
from aim_infra.planning.model_profile import load_model_catalogue  # noqa: E402
from aim_infra.planning.performance_data import load_performance_data  # noqa: E402
from aim_infra.planning.selection import Selector  # noqa: E402
from aim_infra.planning.workload import Workload  # noqa: E402

REPORT = Path(__file__).with_name("performance_model.md")

#: Selections timed: (model, workload) on 8 × MI300X; the sized ones search replica counts per candidate.
CASES = [
    ("Qwen/Qwen3-8B", None),
    ("meta-llama/Llama-3.1-70B-Instruct", None),
    ("openai/gpt-oss-120b", Workload(input_tokens=1024, output_tokens=512, concurrency=128, ttft_p95_ms=2000)),
    ("deepseek-ai/DeepSeek-R1", Workload(input_tokens=2048, output_tokens=512, requests_per_second=2)),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave performance_model.md alone")
    args = parser.parse_args()

    data = load_performance_data()
    measurements = load_measurements()
    for split in ("train", "holdout", "local"):
        points = [m for m in measurements if m.split == split]
        if points:
            print(summarise(evaluate(points, data)).line(split))
    started = time.perf_counter()
    evaluate(measurements, data)
    print(f"replaying all {len(measurements)} measurements: {time.perf_counter() - started:.2f} s")

    selector = Selector()
    mi300x = load_gpus().get("MI300X")
    for model, workload in CASES:
        profile = load_model_catalogue().get(model)
        samples = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            selector.select(profile, mi300x, 8, workload=workload)
            samples.append(time.perf_counter() - started)
        kind = "sized for a workload" if workload else "default workload"
        print(f"select {model} on 8 × MI300X ({kind}): median {statistics.median(samples) * 1e3:.0f} ms")
    if not args.no_write:
        REPORT.write_text(report(data=data), encoding="utf-8")
        print(f"wrote {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
