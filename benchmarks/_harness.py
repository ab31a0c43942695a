"""Run workloads round by round, check what each client fetched and format the report."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks._server import RunningServer, run_server
from benchmarks._workloads import Workload
from benchmarks.clients import clients_for

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024.0


@dataclass
class Run:
    """One client round: what the child reported plus the server's request counters."""

    client: str
    round: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    count: int = 0
    checksum: str = ""
    via: str = ""
    gc_cpu_s: float = 0.0
    gc_collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    baseline_rss_kib: int = 0
    peak_rss_kib: int = 0
    requests: int = 0
    errors: int = 0
    failure: str | None = None


@dataclass
class WorkloadResult:
    """All rounds of one workload with the server's expected count and checksum."""

    workload: Workload
    expected_count: int
    expected_checksum: Decimal
    runs: list[Run] = field(default_factory=list)

    def problems(self, client: str) -> list[str]:
        """Why ``client``'s runs do not match the server's data (empty when they all do)."""
        found = []
        for run in self.runs_of(client):
            where = f"{client} round {run.round}"
            if run.failure is not None:
                found.append(f"{where}: {run.failure}")
                continue
            if run.count != self.expected_count:
                found.append(f"{where}: {run.count:,} credits, expected {self.expected_count:,}")
            if Decimal(run.checksum) != self.expected_checksum:
                found.append(f"{where}: checksum {run.checksum} != {self.expected_checksum}")
            if run.errors:
                found.append(f"{where}: server answered {run.errors} request(s) with an error")
        return found

    def runs_of(self, client: str) -> list[Run]:
        """``client``'s runs in round order."""
        return [run for run in self.runs if run.client == client]

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "workload": asdict(self.workload),
            "expected_count": self.expected_count,
            "expected_checksum": str(self.expected_checksum),
            "expected_requests": self.workload.expected_requests,
            "runs": [asdict(run) for run in self.runs],
        }


def _child_command(client: str, server: RunningServer, workload: Workload) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks._child",
        client,
        server.base_url,
        workload.to_json(),
    ]


def _timeout(workload: Workload) -> float:
    """Generous per-round limit: a client slower than 5,000 credits/s has a problem anyway."""
    return 60 + workload.expected_count / 5_000


def run_client(client: str, server: RunningServer, workload: Workload, round_no: int) -> Run:
    """Run one round of ``client`` in a fresh subprocess."""
    before = server.stats()
    try:
        proc = subprocess.run(
            _child_command(client, server, workload),
            capture_output=True,
            text=True,
            timeout=_timeout(workload),
            cwd=ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Run(client, round_no, failure=f"timed out after {_timeout(workload):.0f} s")
    after = server.stats()
    run = Run(
        client,
        round_no,
        requests=after["requests"] - before["requests"],
        errors=after["errors"] - before["errors"],
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        return replace(run, failure=tail[0])
    return replace(run, **json.loads(proc.stdout.splitlines()[-1]))


def run_workload(workload: Workload, clients: list[str], rounds: int) -> WorkloadResult:
    """Start the server once, then run the clients interleaved: A B A B ..."""
    with run_server(workload) as server:
        result = WorkloadResult(workload, server.count, server.checksum)
        for round_no in range(1, rounds + 1):
            for client in clients_for(workload, clients):
                run = run_client(client, server, workload, round_no)
                result.runs.append(run)
                status = run.failure or f"{run.wall_s:.3f} s"
                print(
                    f"  {workload.name} round {round_no}/{rounds} {client}: {status}",
                    file=sys.stderr,
                    flush=True,
                )
    return result


def profile_client(client: str, workload: Workload) -> None:
    """Run ``client`` once under cProfile; the child prints the top entries to stderr."""
    with run_server(workload) as server:
        command = [*_child_command(client, server, workload), "--profile"]
        subprocess.run(command, timeout=_timeout(workload) * 3, cwd=ROOT, check=True)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratios(result: WorkloadResult, client: str, baseline: str, attr: str) -> list[float]:
    pairs = zip(result.runs_of(client), result.runs_of(baseline), strict=True)
    return [
        getattr(run, attr) / getattr(base, attr)
        for run, base in pairs
        if run.failure is None and base.failure is None and getattr(base, attr) > 0
    ]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(result: WorkloadResult, client: str, baseline: str) -> list[str]:
    ok = [run for run in result.runs_of(client) if run.failure is None]
    wall = _median([run.wall_s for run in ok])
    growth = [(run.peak_rss_kib - run.baseline_rss_kib) / MIB for run in ok]
    return [
        client,
        _fmt(wall, ".3f"),
        _fmt(result.expected_count / wall if wall else None, ",.0f"),
        _fmt(_median(_ratios(result, client, baseline, "wall_s")), ".2f"),
        _fmt(_median(_ratios(result, client, baseline, "cpu_s")), ".2f"),
        _fmt(_median([run.peak_rss_kib / MIB for run in ok]), ".1f"),
        _fmt(_median(growth), ".1f"),
        _fmt(_median([100 * run.gc_cpu_s / run.cpu_s for run in ok if run.cpu_s > 0]), ".1f"),
        _fmt(_median([run.gc_collections[2] for run in ok]), ".0f"),
        _fmt(_median([run.requests for run in ok]), ",.0f"),
        "MISMATCH" if result.problems(client) else "OK",
    ]


def format_table(result: WorkloadResult, clients: list[str]) -> str:
    """Aligned plain-text table for one workload, followed by notes and mismatch reasons.

    Only the clients that ran ``result``'s workload get a row; the first is the baseline.
    """
    clients = clients_for(result.workload, clients)
    baseline = clients[0]
    header = ["client", "median wall s", "credits/s", f"wall/{baseline}", f"cpu/{baseline}"]
    header += ["peak RSS MB", "RSS growth MB", "GC % cpu", "full GCs", "requests", "check"]
    rows = [header, *(_row(result, client, baseline) for client in clients)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    for client in clients:
        vias = sorted({run.via for run in result.runs_of(client) if run.failure is None})
        lines += [f"  {client} via {via}" for via in vias]
        lines += [f"  ! {problem}" for problem in result.problems(client)]
    workload = result.workload
    title = (
        f"{workload.describe()} -- {result.expected_count:,} credits, "
        f"{workload.expected_requests:,} requests per round"
    )
    return "\n".join([title, *lines])
