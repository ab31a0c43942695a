"""Run one client of the job benchmark against a fresh sandbox, and check what it did.

Every run gets a fresh sandbox (:class:`JobServer` ``reset``) and a new temporary folder
for its journal; the client runs in a new process, timed from its start to its exit with
``os.wait4``, which also gives its CPU time (user+sys). Peak RSS is the process's own
``VmHWM`` (``_jobs_peak``: ``ru_maxrss`` would include this process's peak). The Python
clients also time the job itself (``_jobs_child``); the CLI is only timed as a process.
Then the server's counters and its check of every ledger decide whether the run did the
job: exactly one credit per adjustment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._harness import ROOT
from benchmarks._jobs_server import JobServer
from benchmarks._jobs_spec import Job
from benchmarks.cluster import CLI, _env

CLI_CLIENT = "cli"
_PEAK_FILE = "peak-rss-kib.txt"


@dataclass
class Run:
    """One client run: the process's and the job's figures, the server's, and the check."""

    client: str
    job: str
    round: int
    wall_s: float | None = None  # the job alone (Python clients)
    cpu_s: float | None = None
    process_wall_s: float = 0.0  # from spawning the process to its exit
    process_cpu_s: float = 0.0  # user+sys of the process (os.wait4)
    peak_rss_kib: int = 0
    baseline_rss_kib: int | None = None  # after imports (Python clients)
    gc_cpu_s: float | None = None
    gets: int = 0
    posts: int = 0
    server_cpu_s: float = 0.0
    max_in_flight: int = 0
    notes: str | None = None
    via: str = ""
    failure: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether it ran to the end and the ledgers hold exactly what the job asked."""
        return self.failure is None and not self.problems

    @property
    def timed_s(self) -> float:
        """The job's wall time, or the process's for the CLI."""
        return self.process_wall_s if self.wall_s is None else self.wall_s


@dataclass
class Finished:
    """A process that ran to its end (or was killed at its timeout)."""

    returncode: int
    wall_s: float
    cpu_s: float
    stdout: str
    stderr: str
    timed_out: bool


def spawn(
    command: list[str], folder: Path, timeout: float, env: dict[str, str] | None = None
) -> Finished:
    """Run ``command`` from the repository root, its output in files of ``folder``."""
    out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
    expired = threading.Event()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=ROOT, env=env
        )

        def kill() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Finished(
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        timed_out=expired.is_set(),
    )


def cli_flags() -> list[str]:
    """The ``credits apply`` flags of the default run this version offers: ``--tag-notes``
    and a ledger-check flag, if its ``--help`` lists them (otherwise its defaults)."""
    shown = subprocess.run(
        [*CLI, "credits", "apply", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env=_env("http://127.0.0.1:1/v2.0"),
    ).stdout
    offered = set(re.findall(r"--[a-z][a-z-]*", shown))
    flags = [flag for flag in ("--tag-notes",) if flag in offered]
    flags += [flag for flag in ("--check-ledger-first", "--check-ledger") if flag in offered][:1]
    return flags


def cli_command(job: Job, csv_path: Path, folder: Path, flags: list[str]) -> list[str]:
    """``inveterate credits apply`` of the job's batch file into a new journal, run as
    ``python -m inveterate_async.cli`` is, by ``_jobs_peak`` (its peak RSS to a file)."""
    journal = str(folder / "journal.sqlite")
    concurrency = ["--concurrency", str(job.concurrency)]
    module = CLI[CLI.index("-m") + 1]
    peak = [sys.executable, "-m", "benchmarks._jobs_peak", str(folder / _PEAK_FILE), module]
    return [
        *peak,
        "credits",
        "apply",
        str(csv_path),
        "--journal",
        journal,
        "--yes",
        *concurrency,
        *flags,
    ]


def _timeout(job: Job) -> float:
    """Generous: a run slower than 200 adjustments/s has a problem anyway."""
    return 60 + job.adjustments / 200


def _last_line(text: str, fallback: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else fallback


def run_client(
    client: str,
    job: Job,
    csv_path: Path,
    server: JobServer,
    round_no: int,
    tmp_root: Path,
    flags: list[str],
) -> Run:
    """Run ``client`` once on ``job`` against a fresh sandbox and check the ledgers."""
    base_url = server.reset(job.members, job.latency_ms)
    folder = Path(tempfile.mkdtemp(prefix=f"{client}-", dir=tmp_root))
    run = Run(client, job.name, round_no)
    try:
        if client == CLI_CLIENT:
            command, env = cli_command(job, csv_path, folder, flags), _env(base_url)
            run.via = "inveterate credits apply " + " ".join(["--yes", *flags])
        else:
            child = [client, base_url, job.to_json(), str(csv_path), str(folder)]
            command, env = [sys.executable, "-m", "benchmarks._jobs_child", *child], None
        finished = spawn(command, folder, _timeout(job), env)
        peak_file = folder / _PEAK_FILE
        if peak_file.exists():
            run.peak_rss_kib = int(peak_file.read_text())
        stats = server.ask(op="stats")
        checked = server.ask(timeout=60 + job.adjustments / 1_000, op="verify", job=job.to_json())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    run.process_wall_s, run.process_cpu_s = finished.wall_s, finished.cpu_s
    methods: dict[str, int] = stats["methods"]
    run.gets, run.posts = methods.get("GET", 0), methods.get("POST", 0)
    run.server_cpu_s, run.max_in_flight = stats["cpu_s"], stats["max_in_flight"]
    run.notes = checked["notes"]
    if finished.timed_out:
        run.failure = f"timed out after {_timeout(job):.0f} s"
    elif finished.returncode != 0:
        run.failure = _last_line(finished.stderr, f"exit status {finished.returncode}")
    elif client != CLI_CLIENT:
        measured: dict[str, Any] = _child_result(finished.stdout)
        run.wall_s, run.cpu_s = measured["wall_s"], measured["cpu_s"]
        run.gc_cpu_s, run.baseline_rss_kib = measured["gc_cpu_s"], measured["baseline_rss_kib"]
        run.via = measured["via"]
        run.peak_rss_kib = measured["peak_rss_kib"]
    run.problems = list(checked["problems"])
    if run.posts != job.adjustments:
        run.problems.insert(0, f"{run.posts:,} POSTs for {job.adjustments:,} adjustments")
    if stats["errors"]:
        run.problems.insert(0, f"the server answered {stats['errors']} request(s) with an error")
    return run


def _child_result(stdout: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(_last_line(stdout, "{}"))
    return result


def profile(client: str, job: Job, csv_path: Path, server: JobServer, tmp_root: Path) -> None:
    """Run ``client`` once under cProfile; its top entries go to stderr."""
    base_url = server.reset(job.members, job.latency_ms)
    folder = Path(tempfile.mkdtemp(prefix=f"profile-{client}-", dir=tmp_root))
    try:
        child = [client, base_url, job.to_json(), str(csv_path), str(folder), "--profile"]
        command = [sys.executable, "-m", "benchmarks._jobs_child", *child]
        subprocess.run(command, cwd=ROOT, check=True, timeout=_timeout(job) * 3)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
