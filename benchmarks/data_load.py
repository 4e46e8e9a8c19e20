"""Cold and warm load times of FER-2013 through ferkit's cache.

    .venv/bin/python benchmarks/data_load.py [PATH] [--json]

Cold: decode every JPEG (in parallel) and write the cache. Warm: fingerprint the folder and
memory-map the cached arrays. Runs in a throwaway cache folder, so ~/.cache/ferkit is untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fer2013"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(DEFAULT.resolve()))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FERKIT_CACHE"] = cache
        from ferkit.data import load_dataset  # after FERKIT_CACHE is set

        t0 = time.perf_counter()
        cold = load_dataset(args.path)
        t_cold = time.perf_counter() - t0
        warm_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            warm = load_dataset(args.path)
            int(warm["train"].images[-1].sum())  # touch the memory map
            warm_times.append(time.perf_counter() - t0)
    result = {
        "images": sum(len(s) for s in cold.splits.values()),
        "cold_s": round(t_cold, 2),
        "warm_s": round(min(warm_times), 3),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['images']:,} images  cold {result['cold_s']:.2f} s  "
            f"warm {result['warm_s']:.3f} s  ({result['machine']})"
        )


if __name__ == "__main__":
    main()
