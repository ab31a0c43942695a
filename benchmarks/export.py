"""Export benchmark: many members' ledgers into one CSV, against a hand-written loop.

``python -m benchmarks.export`` exports 1,000 members x 100 credits (page 50, concurrency
32) from the benchmark server (its own process, pre-rendered pages) to a CSV file, with:

- ``raw-loop``: the hand-written aiohttp loop (``benchmarks/_export_clients.py``);
- ``export_credits`` and ``export_credits+state``: the library function, without and
  with a resumable state file;
- ``credits-export`` and ``credits-export+state``: ``inveterate credits export`` as a
  process.

Each run is a fresh process, interleaved, ``--rounds`` times. "job s" is the export
itself, timed inside the process (the library and the loop); "process s" is the whole
process, interpreter start and imports included, timed from outside (all five). Every
file is checked: one row per credit with the server's count and sum of amounts, and the
same bytes as the loop's file. Exit status 1 if a check fails; targets only report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from benchmarks._harness import ROOT
from benchmarks._server import RunningServer, run_server
from benchmarks._workloads import API_KEY, Workload

CLIENTS = (
    "raw-loop",
    "export_credits",
    "export_credits+state",
    "credits-export",
    "credits-export+state",
)
TARGETS = (
    ("export_credits", "job", 1.10),
    ("export_credits+state", "job", 1.10),
    ("credits-export", "process", 1.15),
    ("credits-export+state", "process", 1.15),
)


@dataclass(frozen=True)
class Run:
    """One client run: its timings and what its file holds."""

    client: str
    process_s: float
    job_s: float | None
    rows: int
    total: Decimal
    digest: str


def workload(quick: bool) -> Workload:
    """The export workload (a tenth of the members with ``quick``)."""
    members = 100 if quick else 1_000
    return Workload("W4", "export", members, 100, 50, concurrency=32)


def command(client: str, server: RunningServer, load: Workload, out: Path, ids: Path) -> list[str]:
    """The argv of one run of ``client``, writing ``out``."""
    state = ["--state", str(out.with_suffix(".state"))] if client.endswith("+state") else []
    if client.startswith("credits-export"):
        return [
            *(sys.executable, "-m", "inveterate_async.cli", "credits", "export"),
            *("--ids-file", str(ids), "--out", str(out), "--concurrency", "32"),
            *("--page-size", str(load.page_size), *state),
        ]
    kind = "raw" if client == "raw-loop" else "sdk"
    child = (sys.executable, "-m", "benchmarks._export_child", kind, server.base_url)
    return [*child, load.to_json(), str(out), *state]


def read_back(path: Path) -> tuple[int, Decimal, str]:
    """Rows, sum of amounts and SHA-256 of an export file (outside any timing)."""
    data = path.read_bytes()
    lines = data.decode().splitlines()[1:]
    total = sum((Decimal(line.split(",")[2]) for line in lines), Decimal(0))
    return len(lines), total, hashlib.sha256(data).hexdigest()


def run(client: str, server: RunningServer, load: Workload, folder: Path) -> Run:
    """One run of ``client`` in a fresh process, then its file read back."""
    out = folder / f"{client.replace('+', '-')}.csv"
    ids = folder / "ids.txt"
    ids.write_text("".join(f"{m}\n" for m in load.member_ids()), encoding="utf-8")
    env = {**os.environ, "INVETERATE_API_KEY": API_KEY, "INVETERATE_BASE_URL": server.base_url}
    started = time.perf_counter()
    proc = subprocess.run(
        command(client, server, load, out, ids), capture_output=True, text=True, env=env, cwd=ROOT
    )
    process_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{client} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    job_s = None if client.startswith("credits-export") else json.loads(proc.stdout)["job_s"]
    rows, total, digest = read_back(out)
    out.unlink()
    return Run(client, process_s, job_s, rows, total, digest)


def median_ratio(runs: list[Run], client: str, attr: str) -> float:
    """The median over rounds of ``client``'s time over the loop's in the same round."""
    mine = [r for r in runs if r.client == client]
    base = [r for r in runs if r.client == "raw-loop"]
    ratios: list[float] = [
        getattr(a, f"{attr}_s") / getattr(b, f"{attr}_s") for a, b in zip(mine, base, strict=True)
    ]
    return statistics.median(ratios)


def report(runs: list[Run], server: RunningServer, load: Workload) -> bool:
    """Print the tables; whether every file was right."""
    loop_digests = {r.digest for r in runs if r.client == "raw-loop"}
    ok = True
    print(f"\n{load.describe()}, {len(runs) // len(CLIENTS)} rounds")
    print(f"{'client':<22}{'job s':>8}{'process s':>11}{'job/loop':>10}{'proc/loop':>11}  check")
    for client in CLIENTS:
        mine = [r for r in runs if r.client == client]
        right = all(
            (r.rows, r.total) == (server.count, server.checksum) and r.digest in loop_digests
            for r in mine
        )
        ok &= right and len(loop_digests) == 1
        jobs = [r.job_s for r in mine if r.job_s is not None]
        job = f"{statistics.median(jobs):.3f}" if jobs else "-"
        job_ratio = f"{median_ratio(runs, client, 'job'):.2f}" if jobs else "-"
        process = statistics.median(r.process_s for r in mine)
        print(
            f"{client:<22}{job:>8}{process:>11.3f}{job_ratio:>10}"
            f"{median_ratio(runs, client, 'process'):>11.2f}  {'OK' if right else 'WRONG'}"
        )
    print("\ntargets (medians of per-round ratios to the loop)")
    for client, attr, limit in TARGETS:
        ratio = median_ratio(runs, client, attr)
        met = "yes" if ratio <= limit else "NO"
        print(f"  {client} {attr} time <= {limit:.2f}x the loop: {ratio:.2f}  {met}")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 1 if any file was wrong."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100 members, 2 rounds (CI)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, or 2 with --quick)")
    parser.add_argument("--profile", choices=["raw", "sdk"], help="cProfile one run instead")
    args = parser.parse_args(argv)
    load = workload(args.quick)
    rounds = args.rounds or (2 if args.quick else 5)
    with run_server(load) as server, tempfile.TemporaryDirectory() as folder:
        if args.profile:
            argv_ = command(
                "raw-loop" if args.profile == "raw" else "export_credits",
                server,
                load,
                Path(folder) / "out.csv",
                Path(folder) / "ids.txt",
            )
            subprocess.run([*argv_, "--profile"], cwd=ROOT, check=True)
            return 0
        runs = []
        for round_no in range(1, rounds + 1):
            for client in CLIENTS:
                done = run(client, server, load, Path(folder))
                runs.append(done)
                print(
                    f"  round {round_no}/{rounds} {client}: {done.process_s:.3f} s",
                    file=sys.stderr,
                    flush=True,
                )
        return 0 if report(runs, server, load) else 1


if __name__ == "__main__":
    sys.exit(main())
