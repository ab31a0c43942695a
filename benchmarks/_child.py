"""One client round in a fresh process; prints its measurements as one JSON line.

``python -m benchmarks._child CLIENT BASE_URL WORKLOAD_JSON [--profile]``. With ``--profile``
the run happens under cProfile and the top entries by tottime go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._workloads import Workload
from benchmarks.clients import Fetch, Tally, load


def _rss_kib() -> int:
    """Current resident set size in KiB (Linux ``/proc/self/statm``)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


async def _timed(fetch: Fetch, base_url: str, workload: Workload) -> tuple[Tally, float, float]:
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    tally = await fetch(base_url, workload)
    return tally, time.perf_counter() - wall_start, time.process_time() - cpu_start


def measure(client: str, base_url: str, workload: Workload, profile: bool) -> dict[str, Any]:
    """Load ``client``, run its fetch phase once and return the measurements."""
    fetch = load(client)
    gc.collect()
    baseline_kib = _rss_kib()
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    tally, wall, cpu = asyncio.run(_timed(fetch, base_url, workload))
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(15)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "count": tally.credits,
        "checksum": str(tally.total),
        "via": tally.via,
        "baseline_rss_kib": baseline_kib,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main() -> None:
    """Parse the command line and print the measurements."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._child")
    parser.add_argument("client")
    parser.add_argument("base_url")
    parser.add_argument("workload", type=Workload.from_json)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(json.dumps(measure(args.client, args.base_url, args.workload, args.profile)))


if __name__ == "__main__":
    main()
