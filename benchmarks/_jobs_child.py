"""One client run of the job benchmark in a fresh process; prints its measurements as one
JSON line.

``python -m benchmarks._jobs_child CLIENT BASE_URL JOB_JSON CSV WORKDIR [--profile]``. The
client's module (the SDK, or aiohttp) is imported first; the timed part is the job itself:
reading the batch file, then applying it. It reports wall and CPU time (user+sys of every
thread: the SDK's journal thread included), the garbage collections (``GcClock``), and RSS
before the job and at its peak (``VmHWM``: see ``_jobs_peak``). With ``--profile`` the job
runs under cProfile (the main thread only) and the top entries go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import json
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks._child import GcClock, _rss_kib
from benchmarks._jobs_loops import Outcome
from benchmarks._jobs_peak import peak_rss_kib
from benchmarks._jobs_spec import Job

Apply = Callable[[str, Job, str, Path], Awaitable[Outcome]]

# The clients that run in this process, as "module:function"; "cli" runs the real command.
CLIENTS = {
    "post-only": "benchmarks._jobs_loops:post_only",
    "journal-loop": "benchmarks._jobs_loops:with_journal",
    "read-then-write": "benchmarks._jobs_loops:read_then_write",
    "sdk-default": "benchmarks._jobs_sdk:default_run",
    "sdk-opt-out": "benchmarks._jobs_sdk:opt_out_run",
}
_PROFILE_ENTRIES = 25


def load(name: str) -> Apply:
    """Import client ``name`` (and everything it imports) and return its function."""
    module, function = CLIENTS[name].split(":")
    apply: Apply = getattr(importlib.import_module(module), function)
    return apply


async def _timed(
    apply: Apply, base_url: str, job: Job, csv_path: str, workdir: Path
) -> tuple[Outcome, float, float]:
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    outcome = await apply(base_url, job, csv_path, workdir)
    return outcome, time.perf_counter() - wall_start, time.process_time() - cpu_start


def measure(
    client: str, base_url: str, job: Job, csv_path: str, workdir: Path, profile: bool
) -> dict[str, Any]:
    """Load ``client``, run the job once and return the measurements."""
    apply = load(client)
    gc.collect()
    baseline_kib = _rss_kib()
    profiler = cProfile.Profile() if profile else None
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock)
    if profiler is not None:
        profiler.enable()
    outcome, wall, cpu = asyncio.run(_timed(apply, base_url, job, csv_path, workdir))
    if profiler is not None:
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(_PROFILE_ENTRIES)
        stats.sort_stats("cumulative").print_stats(_PROFILE_ENTRIES)
    gc.callbacks.remove(gc_clock)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "gc_cpu_s": gc_clock.cpu_s,
        "gc_collections": gc_clock.collections,
        "sent": outcome.sent,
        "via": outcome.via,
        "baseline_rss_kib": baseline_kib,
        "peak_rss_kib": peak_rss_kib(),
    }


def main() -> None:
    """Parse the command line and print the measurements."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._jobs_child")
    parser.add_argument("client", choices=list(CLIENTS))
    parser.add_argument("base_url")
    parser.add_argument("job", type=Job.from_json)
    parser.add_argument("csv")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    measured = measure(args.client, args.base_url, args.job, args.csv, args.workdir, args.profile)
    print(json.dumps(measured))


if __name__ == "__main__":
    main()
