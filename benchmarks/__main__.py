"""Command line of the benchmark suite: ``python -m benchmarks --help``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from benchmarks._harness import WorkloadResult, format_table, profile_client, run_workload
from benchmarks._workloads import workloads
from benchmarks.clients import CLIENTS

WORKLOAD_NAMES = list(workloads(quick=False))
# --quick runs one of the three latency workloads: CI runs it and should stay within ~30 s.
QUICK_WORKLOAD_NAMES = ["W1", "W2", "W2-c128", "W3"]


def _name_list(allowed: list[str]) -> Callable[[str], list[str]]:
    """argparse type for a comma-separated subset of ``allowed``, order kept."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names or set(names) - set(allowed) or len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"a comma-separated subset of {','.join(allowed)}")
        return names

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark the inveterate_async SDK against a hand-written aiohttp client.",
    )
    parser.add_argument("--quick", action="store_true", help="scaled-down workloads")
    parser.add_argument(
        "--rounds", type=int, help="rounds per client (default: 5, or 2 with --quick)"
    )
    parser.add_argument(
        "--workloads",
        type=_name_list(WORKLOAD_NAMES),
        metavar=",".join(WORKLOAD_NAMES),
        help=f"default: all, or {','.join(QUICK_WORKLOAD_NAMES)} with --quick",
    )
    parser.add_argument(
        "--clients",
        type=_name_list(list(CLIENTS)),
        default=list(CLIENTS),
        metavar=",".join(CLIENTS),
        help="clients to run; the first is the baseline for ratios",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also dump raw results here")
    parser.add_argument(
        "--profile",
        choices=list(CLIENTS),
        metavar="CLIENT",
        help="instead of benchmarking, run CLIENT once per workload under cProfile",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; exit status 1 if any client fetched the wrong data."""
    args = _parser().parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    if rounds < 1:
        _parser().error("--rounds must be at least 1")
    names = args.workloads or (QUICK_WORKLOAD_NAMES if args.quick else WORKLOAD_NAMES)
    selected = [workloads(args.quick)[name] for name in names]
    if args.profile:
        for workload in selected:
            print(f"{workload.describe()}: cProfile of {args.profile}", flush=True)
            profile_client(args.profile, workload)
        return 0

    mode = "quick" if args.quick else "full"
    print(
        f"{mode} mode, {rounds} round(s), clients {','.join(args.clients)}; python "
        f"{platform.python_version()}, aiohttp {version('aiohttp')}, {os.cpu_count()} CPUs; "
        "wall/RSS figures are medians over rounds, ratios are medians of per-round ratios",
        flush=True,
    )
    results: list[WorkloadResult] = []
    for workload in selected:
        results.append(run_workload(workload, args.clients, rounds))
        print(f"\n{format_table(results[-1], args.clients)}", flush=True)

    if args.json:
        dump = {"mode": mode, "rounds": rounds, "results": [r.to_json() for r in results]}
        args.json.write_text(json.dumps(dump, indent=2) + "\n")
    ok = not any(result.problems(client) for result in results for client in args.clients)
    print(f"\ncount check: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
