"""The job benchmark's tables: each job's clients, the issue's targets, and memory.

Times are medians over rounds; a ratio is the median of the per-round ratios (the two runs
of one round, which ran next to each other), with its range over rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks._harness import MIB, _fmt, _median
from benchmarks._jobs_harness import CLI_CLIENT, Run
from benchmarks._jobs_spec import Job


@dataclass(frozen=True)
class Target:
    """``client``'s time over ``baseline``'s on one job is at most ``limit``."""

    what: str
    client: str
    baseline: str
    latency_ms: float
    concurrency: int
    limit: float
    process: bool = False  # compare the processes' wall times (start to exit)

    def job_of(self, jobs: Sequence[Job]) -> Job | None:
        """The job this target is about, if it ran."""
        for job in jobs:
            if job.latency_ms == self.latency_ms and job.concurrency == self.concurrency:
                return job
        return None


def _targets() -> list[Target]:
    pairs = [
        ("default <= 1.15x read-then-write", "sdk-default", "read-then-write", 5, 1.15),
        ("opt-out <= 1.15x POST-only", "sdk-opt-out", "post-only", 5, 1.15),
        ("default <= 0.8x journal loop", "sdk-default", "journal-loop", 0, 0.8),
        ("default <= 2x POST-only", "sdk-default", "post-only", 0, 2.0),
    ]
    targets = [
        Target(what, client, baseline, latency, concurrency, limit)
        for what, client, baseline, latency, limit in pairs
        for concurrency in (8, 32)
    ]
    targets += [
        Target(
            "CLI <= 1.10x Python API (default run; process wall)",
            CLI_CLIENT,
            "sdk-default",
            latency,
            concurrency,
            1.10,
            process=True,
        )
        for latency in (0, 5)
        for concurrency in (8, 32)
    ]
    return targets


TARGETS = _targets()
GROWTH_RATIO_LIMIT = 1.3
GROWTH_LIMIT_MB = 64.0


def runs_of(runs: Sequence[Run], job: Job, client: str) -> list[Run]:
    """``client``'s runs of ``job``, in round order."""
    return [run for run in runs if run.job == job.name and run.client == client]


def ratios(runs: Sequence[Run], job: Job, client: str, baseline: str, attr: str) -> list[float]:
    """Per round: ``client``'s ``attr`` over ``baseline``'s, for rounds both got right."""
    base = {run.round: run for run in runs_of(runs, job, baseline) if run.ok}
    found = []
    for run in runs_of(runs, job, client):
        other = base.get(run.round)
        mine, theirs = getattr(run, attr), getattr(other, attr, None)
        if run.ok and other is not None and mine is not None and theirs:
            found.append(mine / theirs)
    return found


def _align(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _percent(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else 100 * part / whole


def _client_row(runs: Sequence[Run], job: Job, client: str, baseline: str) -> list[str]:
    ok = [run for run in runs_of(runs, job, client) if run.ok]
    wall = _median([run.wall_s for run in ok if run.wall_s is not None])
    wall_ratio = _median(ratios(runs, job, client, baseline, "wall_s"))
    cpu_ratio = _median(ratios(runs, job, client, baseline, "cpu_s"))
    gc_share = [_percent(run.gc_cpu_s, run.cpu_s) for run in ok]
    notes = sorted({run.notes or "?" for run in ok})
    return [
        client,
        _fmt(wall, ".3f"),
        _fmt(job.adjustments / wall if wall else None, ",.0f"),
        _fmt(_median([run.cpu_s for run in ok if run.cpu_s is not None]), ".3f"),
        _fmt(_median([run.process_wall_s for run in ok]), ".3f"),
        _fmt(_median([run.process_cpu_s for run in ok]), ".3f"),
        _fmt(wall_ratio, ".2f"),
        _fmt(cpu_ratio, ".2f"),
        _fmt(_median([share for share in gc_share if share is not None]), ".1f"),
        _fmt(_median([run.peak_rss_kib / MIB for run in ok]), ".1f"),
        _fmt(_median([run.gets for run in ok]), ",.0f"),
        _fmt(_median([run.posts for run in ok]), ",.0f"),
        _fmt(_median([_percent(run.server_cpu_s, run.timed_s) or 0.0 for run in ok]), ".0f"),
        ",".join(notes) or "-",
        "OK" if all(run.ok for run in runs_of(runs, job, client)) else "MISMATCH",
    ]


def job_table(job: Job, runs: Sequence[Run], clients: list[str]) -> str:
    """One job's clients: times, ratios to the first client, requests and the check."""
    baseline = clients[0]
    header = ["client", "job s", "rows/s", "job CPU s", "process s", "proc CPU s"]
    header += [f"wall/{baseline}", f"cpu/{baseline}", "GC %", "peak RSS MB", "GETs", "POSTs"]
    header += ["server CPU %", "notes", "check"]
    lines = _align([header, *(_client_row(runs, job, client, baseline) for client in clients)])
    for client in clients:
        done = runs_of(runs, job, client)
        lines += [f"  {client}: {via}" for via in sorted({run.via for run in done if run.via})]
        for run in done:
            if run.failure is not None:
                lines.append(f"  ! {client} round {run.round}: {run.failure}")
            lines += [f"  ! {client} round {run.round}: {problem}" for problem in run.problems]
    cli_gets = _median([run.gets for run in runs_of(runs, job, CLI_CLIENT) if run.ok])
    api_gets = _median([run.gets for run in runs_of(runs, job, "sdk-default") if run.ok])
    if cli_gets is not None and api_gets is not None and cli_gets != api_gets:
        lines.append(
            f"  ! the CLI read {cli_gets:,.0f} page(s), the API's default run {api_gets:,.0f}: "
            "its flags do not make the same run"
        )
    return "\n".join([job.describe(), *lines])


def _met(value: float | None, limit: float, below: bool = False) -> str:
    if value is None:
        return "-"
    return "yes" if (value < limit if below else value <= limit) else "NO"


def targets_table(
    jobs: Sequence[Job], runs: Sequence[Run], memory: Sequence[tuple[Job, Run]] | None
) -> str:
    """Every target with its median ratio, the range over rounds and whether it is met."""
    rows = [["target", "job", "median", "range", "limit", "met"]]
    for target in TARGETS:
        job = target.job_of(jobs)
        if job is None:
            continue
        attr = "process_wall_s" if target.process else "wall_s"
        found = ratios(runs, job, target.client, target.baseline, attr)
        median = _median(found)
        spread = f"{min(found):.2f}-{max(found):.2f}" if found else "-"
        limit = f"{target.limit:.2f}"
        rows.append(
            [target.what, job.name, _fmt(median, ".2f"), spread, limit, _met(median, target.limit)]
        )
    if memory:
        (small_job, small), (large_job, large) = memory[1], memory[-1]
        baseline = memory[0][1]
        small_growth = _growth_mb(small, baseline)
        large_growth = _growth_mb(large, baseline)
        ratio = large_growth / small_growth if large_growth is not None and small_growth else None
        sizes = f"{large_job.adjustments:,} vs {small_job.adjustments:,} rows"
        rows.append(
            [
                f"RSS growth <= {GROWTH_RATIO_LIMIT}x",
                sizes,
                _fmt(ratio, ".2f"),
                "-",
                f"{GROWTH_RATIO_LIMIT:.2f}",
                _met(ratio, GROWTH_RATIO_LIMIT),
            ]
        )
        rows.append(
            [
                f"RSS growth < {GROWTH_LIMIT_MB:g} MB",
                f"{large_job.adjustments:,} rows",
                _fmt(large_growth, ".1f"),
                "-",
                f"{GROWTH_LIMIT_MB:g} MB",
                _met(large_growth, GROWTH_LIMIT_MB, below=True),
            ]
        )
    return "\n".join(_align(rows))


def _growth_mb(run: Run, baseline: Run) -> float | None:
    if not (run.ok and baseline.ok):
        return None
    return (run.peak_rss_kib - baseline.peak_rss_kib) / MIB


def memory_table(memory: Sequence[tuple[Job, Run]]) -> str:
    """``credits apply``'s peak RSS per batch size, and its growth over the smallest's."""
    baseline = memory[0][1]
    rows = [["rows", "members", "process s", "rows/s", "peak RSS MB", "growth MB"]]
    rows[0] += ["GETs", "POSTs", "check"]
    for job, run in memory:
        rows.append(
            [
                f"{job.adjustments:,}",
                f"{job.members:,}",
                f"{run.process_wall_s:.2f}",
                f"{job.adjustments / run.process_wall_s:,.0f}",
                f"{run.peak_rss_kib / MIB:.1f}",
                "(baseline)" if run is baseline else _fmt(_growth_mb(run, baseline), ".1f"),
                f"{run.gets:,}",
                f"{run.posts:,}",
                "OK" if run.ok else "MISMATCH",
            ]
        )
    lines = _align(rows)
    for job, run in memory:
        if run.failure is not None:
            lines.append(f"  ! {job.adjustments:,} rows: {run.failure}")
        lines += [f"  ! {job.adjustments:,} rows: {problem}" for problem in run.problems]
    return "\n".join(lines)
