"""Benchmark: how fast the model downloader verifies files (sha256 and git blob sha1 of a file, in MB/s).

    python benchmarks/download_hash.py [--mib 512] [--repeat 3] [--threads 1,2]

Writes a file of random bytes, then times `aim_infra.pod.hub_digest.file_digest` on it: first once to warm the page
cache (a file the downloader has just written is still there), then `--repeat` times per digest kind and thread count
(the downloader hashes up to 8 files at once; hashlib releases the GIL). Prints the best of the repeats.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aim_infra.pod.hub_digest import file_digest


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def best_seconds(paths: list[Path], kind: str, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(paths)) as pool:
            list(pool.map(lambda path: file_digest(path, kind), paths))
        samples.append(time.perf_counter() - start)
    return min(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512, help="size of each test file in MiB (default 512)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="comma-separated numbers of files hashed at once")
    args = parser.parse_args()
    threads = sorted({max(1, int(n)) for n in args.threads.split(",")})
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="aim-hash-") as folder:
        paths = []
        for number in range(max(threads)):
            path = Path(folder) / f"shard-{number}.bin"
            with path.open("wb") as out:
                for _ in range(args.mib):
                    out.write(os.urandom(2**20))
            file_digest(path, "sha256")  # warm the page cache
            paths.append(path)
        for kind in ("sha256", "git-sha1"):
            for count in threads:
                seconds = best_seconds(paths[:count], kind, args.repeat)
                rate = count * args.mib * 2**20 / 1e6 / seconds
                print(f"{kind:8} {count} file(s) of {args.mib} MiB at once: {rate:,.0f} MB/s")


if __name__ == "__main__":
    main()
