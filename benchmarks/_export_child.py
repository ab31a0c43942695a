"""One in-process client run of the export benchmark; prints its timings as one JSON line.

``python -m benchmarks._export_child CLIENT BASE_URL WORKLOAD_JSON OUT [--state FILE]
[--profile]``: the client's modules are imported first; the timed part is the export.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._child import run_measured
from benchmarks._export_clients import raw_export, sdk_export
from benchmarks._workloads import Workload


def main() -> None:
    """Parse the command line, run the export once and print the timings."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._export_child")
    parser.add_argument("client", choices=["raw", "sdk"])
    parser.add_argument("base_url")
    parser.add_argument("workload", type=Workload.from_json)
    parser.add_argument("out", type=Path)
    parser.add_argument("--state", type=Path)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.client == "sdk":
        import inveterate_async  # noqa: F401  (imports are not part of the job)

        job = sdk_export(args.base_url, args.workload, args.out, args.state)
    else:
        job = raw_export(args.base_url, args.workload, args.out)
    sorts = ["tottime"] if args.profile else []
    _, measured = run_measured(lambda: job, sorts, 20)
    timings = {"job_s": measured["wall_s"], "job_cpu_s": measured["cpu_s"]}
    print(json.dumps(timings))


if __name__ == "__main__":
    main()
