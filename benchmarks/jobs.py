"""Job benchmark: bulk credit adjustments with ``apply_credits`` and ``credits apply``.

``python -m benchmarks.jobs`` applies 5,000 adjustments over 1,000 members (3 credits
each beforehand) at concurrency 8 and 32, against a sandbox API (its own process) that
waits 0 and 5 ms in every handler. Per job and round, interleaved, each in a fresh process
against a fresh sandbox with a new journal folder:

- ``post-only``, ``journal-loop``, ``read-then-write``: hand-written aiohttp loops with an
  ``asyncio.Semaphore`` (see ``benchmarks/_jobs_loops.py``);
- ``sdk-default``: ``apply_credits(tag_notes=True, check_ledger_first=True)``, and
  ``sdk-opt-out``: both False (see ``benchmarks/_jobs_sdk.py``);
- ``cli``: ``inveterate credits apply FILE.csv --journal J.sqlite --yes --concurrency C``
  with the default run's flags.

Every run is checked: the server counts the POSTs and its ledgers must hold exactly one
credit per adjustment. It prints each job's figures and the issue's targets, met or not,
then ``credits apply``'s peak RSS growth on 50,000 and 200,000 rows (0 ms, c=32).
Exit status 1 if any run did not do the job right; the targets only report (machines are
noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from benchmarks._harness import ROOT
from benchmarks._jobs_child import CLIENTS as PYTHON_CLIENTS
from benchmarks._jobs_harness import CLI_CLIENT, Run, cli_flags, profile, run_client
from benchmarks._jobs_report import job_table, memory_table, targets_table
from benchmarks._jobs_server import JobServer
from benchmarks._jobs_spec import Job, write_csv

CLIENTS = [*PYTHON_CLIENTS, CLI_CLIENT]
LATENCIES_MS = (0.0, 5.0)
CONCURRENCIES = (8, 32)
ROWS_PER_MEMBER = 5


@dataclass(frozen=True)
class Sizes:
    """The jobs' batch and the memory runs' batches."""

    adjustments: int
    members: int
    memory: tuple[int, int]


FULL = Sizes(5_000, 1_000, (50_000, 200_000))
QUICK = Sizes(300, 60, (1_000, 4_000))
MEMORY_BASELINE_ROWS = 100
MEMORY_CONCURRENCY = 32
MEMORY_METHOD = (
    "peak RSS: VmHWM of the `credits apply` process (/proc/self/status at its exit, via "
    "benchmarks._jobs_peak); growth: that minus "
    f"the peak of the same command on a {MEMORY_BASELINE_ROWS}-row batch (interpreter, "
    "imports, client and journal set up)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.jobs",
        description="Benchmark bulk credit adjustments (apply_credits, credits apply) "
        "against hand-written aiohttp loops.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK.adjustments} adjustments, c=8 at 0 ms and c=32 at 5 ms only, 2 rounds, "
        f"memory on {QUICK.memory[0]:,}/{QUICK.memory[1]:,} rows: keeps it working (CI)",
    )
    parser.add_argument("--rounds", type=int, help="rounds (default: 3, or 2 with --quick)")
    parser.add_argument(
        "--clients",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=CLIENTS,
        metavar=",".join(CLIENTS),
        help="clients to run (default: all); the first is the baseline of the job tables",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    parser.add_argument("--memory-only", action="store_true", help="only the memory runs")
    parser.add_argument(
        "--tmpdir",
        type=Path,
        help="where journals go (default: the system's temporary folder); its file system "
        "decides what an fsync costs",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also dump every run here")
    parser.add_argument(
        "--profile",
        choices=list(PYTHON_CLIENTS),
        metavar="CLIENT",
        help="instead of benchmarking, run CLIENT once per job under cProfile",
    )
    return parser


def _file_system(path: Path) -> str:
    """The type of the file system holding ``path`` (Linux), e.g. ``ext4``."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown file system"
    resolved, best, kind = str(path.resolve()), "", "unknown file system"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _jobs(sizes: Sizes, quick: bool) -> list[Job]:
    pairs = [(c, latency) for latency in LATENCIES_MS for c in CONCURRENCIES]
    if quick:  # every client, both latencies and both concurrencies, in two jobs
        pairs = [(CONCURRENCIES[0], LATENCIES_MS[0]), (CONCURRENCIES[-1], LATENCIES_MS[-1])]
    return [Job(sizes.adjustments, sizes.members, c, latency) for c, latency in pairs]


def _memory_jobs(sizes: tuple[int, int]) -> list[Job]:
    rows = [MEMORY_BASELINE_ROWS, *sizes]
    return [Job(n, max(1, n // ROWS_PER_MEMBER), MEMORY_CONCURRENCY, 0.0) for n in rows]


def _header(mode: str, rounds: int, clients: list[str], tmp_root: Path, flags: list[str]) -> str:
    from benchmarks._jobs_sdk import HAS_CHECK_LEDGER_FIRST

    check = "has" if HAS_CHECK_LEDGER_FIRST else "has no"
    return (
        f"{mode} mode, {rounds} round(s), clients {','.join(clients)}; python "
        f"{platform.python_version()}, aiohttp {version('aiohttp')}, {os.cpu_count()} CPUs; "
        f"apply_credits {check} check_ledger_first; CLI default-run flags: "
        f"{' '.join(flags) or '(none)'}; journals in {tmp_root} "
        f"({_file_system(tmp_root)}). Job s/CPU: the job in the client's process (reading "
        "the CSV included); process s/CPU: start to exit (user+sys); medians over rounds, "
        "ratios are medians of per-round ratios"
    )


def _progress(run: Run, rounds: int) -> None:
    status = run.failure or f"{run.timed_s:.3f} s"
    if run.problems:
        status += f" MISMATCH: {run.problems[0]}"
    print(f"  round {run.round}/{rounds} {run.job} {run.client}: {status}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables; exit status 1 if any run did the job wrong."""
    parser = _parser()
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 3)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    unknown = set(args.clients) - set(CLIENTS)
    if unknown or not args.clients:
        parser.error(f"--clients: a comma-separated subset of {','.join(CLIENTS)}")
    sizes = QUICK if args.quick else FULL
    jobs = _jobs(sizes, args.quick)
    tmp_root = Path(tempfile.mkdtemp(prefix="inveterate-jobs-bench-", dir=args.tmpdir))
    try:
        return _run(args, rounds, jobs, _memory_jobs(sizes.memory), tmp_root)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


def _run(
    args: argparse.Namespace, rounds: int, jobs: list[Job], memory_jobs: list[Job], tmp_root: Path
) -> int:
    csv_paths: dict[Job, Path] = {}
    for number, job in enumerate([*jobs, *memory_jobs]):
        csv_paths[job] = tmp_root / f"batch-{number}.csv"
        write_csv(csv_paths[job], job.rows())
    with JobServer(str(ROOT)) as server:
        if args.profile:
            for job in jobs:
                print(f"{job.describe()}: cProfile of {args.profile}", flush=True)
                profile(args.profile, job, csv_paths[job], server, tmp_root)
            return 0
        flags = cli_flags()
        mode = "quick" if args.quick else "full"
        print(_header(mode, rounds, args.clients, tmp_root, flags), flush=True)
        runs: list[Run] = []
        if not args.memory_only:
            for round_no in range(1, rounds + 1):
                # Rotated each round, so that no client always runs first or after another.
                shift = (round_no - 1) % len(args.clients)
                order = args.clients[shift:] + args.clients[:shift]
                for job in jobs:
                    for client in order:
                        run = run_client(
                            client, job, csv_paths[job], server, round_no, tmp_root, flags
                        )
                        runs.append(run)
                        _progress(run, rounds)
            for job in jobs:
                print(f"\n{job_table(job, runs, args.clients)}", flush=True)
        memory: list[tuple[Job, Run]] = []
        if not args.no_memory:
            print(f"\nmemory: `credits apply` at 0 ms, c={MEMORY_CONCURRENCY}; {MEMORY_METHOD}")
            for job in memory_jobs:
                run = run_client(CLI_CLIENT, job, csv_paths[job], server, 1, tmp_root, flags)
                memory.append((job, run))
                _progress(run, 1)
            print(memory_table(memory), flush=True)
    print(f"\ntargets\n{targets_table(jobs, runs, memory)}")
    if args.json:
        dump = {
            "rounds": rounds,
            "jobs": [asdict(job) for job in jobs],
            "runs": [asdict(run) for run in runs],
            "memory": [{"job": asdict(job), "run": asdict(run)} for job, run in memory],
        }
        args.json.write_text(json.dumps(dump, indent=2) + "\n")
    every = runs + [run for _, run in memory]
    ok = all(run.ok for run in every)
    print(f"\ncount check: {'OK' if ok else 'MISMATCH'} (every run: one credit per adjustment)")
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
