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
import importlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks._child import run_measured
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


def measure(
    client: str, base_url: str, job: Job, csv_path: str, workdir: Path, profile: bool
) -> dict[str, Any]:
    """Load ``client``, run the job once and return the measurements."""
    apply = load(client)
    sorts = ["tottime", "cumulative"] if profile else []
    outcome, measured = run_measured(
        lambda: apply(base_url, job, csv_path, workdir), sorts, _PROFILE_ENTRIES
    )
    return {**measured, "sent": outcome.sent, "via": outcome.via, "peak_rss_kib": peak_rss_kib()}


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
