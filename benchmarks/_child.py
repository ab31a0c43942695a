"""One client round in a fresh process; prints its measurements as one JSON line.

Besides wall and CPU time and RSS, it reports the CPU time spent in garbage collections
and how many there were of each generation.

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
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from benchmarks._workloads import Workload
from benchmarks.clients import load

T = TypeVar("T")


class GcClock:
    """A ``gc.callbacks`` entry adding up the CPU time of collections and counting them."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.cpu_s += time.thread_time() - self._started
            self.collections[info["generation"]] += 1


def _rss_kib() -> int:
    """Current resident set size in KiB (Linux ``/proc/self/statm``)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def run_measured(
    make: Callable[[], Awaitable[T]], profile: Sequence[str], entries: int
) -> tuple[T, dict[str, Any]]:
    """Run the coroutine ``make()`` once with :func:`asyncio.run`, after a collection, and
    measure it: wall and CPU time (every thread's), garbage collections, and RSS before
    it. Under cProfile when ``profile`` names sort keys: the top ``entries`` by each go
    to stderr."""

    async def timed() -> tuple[T, float, float]:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        result = await make()
        return result, time.perf_counter() - wall_start, time.process_time() - cpu_start

    gc.collect()
    baseline_kib = _rss_kib()
    profiler = cProfile.Profile() if profile else None
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock)
    if profiler is not None:
        profiler.enable()
    try:
        result, wall, cpu = asyncio.run(timed())
    finally:
        if profiler is not None:
            profiler.disable()
        gc.callbacks.remove(gc_clock)
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        for key in profile:
            stats.sort_stats(key).print_stats(entries)
    return result, {
        "wall_s": wall,
        "cpu_s": cpu,
        "gc_cpu_s": gc_clock.cpu_s,
        "gc_collections": gc_clock.collections,
        "baseline_rss_kib": baseline_kib,
    }


def measure(client: str, base_url: str, workload: Workload, profile: bool) -> dict[str, Any]:
    """Load ``client``, run its fetch phase once and return the measurements."""
    fetch = load(client)
    tally, measured = run_measured(
        lambda: fetch(base_url, workload), ["tottime"] if profile else [], 15
    )
    return {
        **measured,
        "count": tally.credits,
        "checksum": str(tally.total),
        "via": tally.via,
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
