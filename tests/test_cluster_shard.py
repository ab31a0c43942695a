"""The shard job and its journal, in process against a real Sandbox (no broker needed):
whole-or-absent shard files, resuming every member from its position, failures."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("arq", reason="the cluster extra is not installed: pip install -e '.[test]'")

from arq import Retry
from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError

from inveterate_async import (
    APIConnectionError,
    InveterateClient,
    LedgerPosition,
    NotFoundError,
    PaginationError,
    RateLimitError,
    ServerError,
)
from inveterate_async._export.rows import EXPORT_COLUMNS, export_line
from inveterate_async.cli._output import JsonLinesWriter, timestamp_text
from inveterate_async.cluster import (
    ClusterWorker,
    ShardFailed,
    ShardSpec,
    WorkerOptions,
    _worker,
    deserialize,
    export_shard,
    is_transient,
    journal_file,
    merge_jsonl,
    read_rows,
    recovery_seconds,
    run_shard,
    serialize,
    shard_file,
    shutdown,
    startup,
    worker_settings,
)
from inveterate_async.cluster._files import write_atomically
from inveterate_async.cluster._journal import ShardJournal
from inveterate_async.testing import Sandbox
from tests.architecture_imports import PACKAGE, Import, parse_package, within
from tests.conftest import API_KEY


@pytest.fixture
async def patient(sandbox: Sandbox) -> AsyncIterator[InveterateClient]:
    """A client that does not retry: each injected fault reaches the shard job."""
    async with InveterateClient(API_KEY, base_url=sandbox.base_url, max_retries=0) as client:
        yield client


def spec_for(out: Path, members: list[str], page_size: int | None = None) -> ShardSpec:
    return ShardSpec("e1", 3, str(out), tuple(members), page_size)


async def expected_text(client: InveterateClient, members: list[str]) -> str:
    lines = []
    for member in members:
        lines.extend([export_line(member, credit) async for credit in client.iter_credits(member)])
    return "".join(lines)


def gets(sandbox: Sandbox, member: str | None = None) -> list[Any]:
    return [
        r
        for r in sandbox.requests
        if r.method == "GET" and (member is None or r.customer_id == member)
    ]


# --- rows, specs, files -------------------------------------------------------------


async def test_a_shard_row_is_the_jsonl_row_of_credits_export(
    sandbox: Sandbox, client: InveterateClient
) -> None:
    sandbox.add_credits("42", [{"amount": "10.10", "note": 'Grüße "quoted"\n'}, "-0.10"])
    credits = [credit async for credit in client.iter_credits("42")]
    stream = io.StringIO()
    writer = JsonLinesWriter(stream, EXPORT_COLUMNS)
    for credit in credits:
        writer.write_row(
            (
                "42",
                timestamp_text(credit.created_at) if credit.created_at else None,
                credit.amount,
                credit.new_balance,
                credit.reason,
                credit.note,
                credit.raw.get("id"),
            )
        )

    assert "".join(export_line("42", credit) for credit in credits) == stream.getvalue()
    assert '"amount":10.10,' in stream.getvalue()
    assert '"created_at":"2024-03-01T12:00:00Z"' in stream.getvalue()


def test_shard_spec_is_json_both_ways(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, ["1", "a/b", "é"], page_size=7)

    assert ShardSpec.from_json(deserialize(serialize({"s": spec.to_json()}))["s"]) == spec


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"export": "e", "shard": 0, "out": "/o", "members": ["1"]},
        {"export": "e", "shard": 0, "out": "/o", "members": ["1", ""], "page_size": None},
        {"export": "e", "shard": 0, "out": "/o", "members": "1", "page_size": None},
        {"export": "e", "shard": 0, "out": "/o", "members": ["1"], "page_size": 0},
        {"export": "e", "shard": -1, "out": "/o", "members": ["1"], "page_size": None},
        {"export": "e", "shard": True, "out": "/o", "members": ["1"], "page_size": None},
        {"export": 1, "shard": 0, "out": "/o", "members": ["1"], "page_size": None},
    ],
)
def test_bad_shard_specs_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="shard spec"):
        ShardSpec.from_json(value)


def test_serialisation_is_json_and_describes_exceptions() -> None:
    data = serialize({"r": ShardFailed("shard 1: member 7 cannot be read"), "a": [1]})

    assert deserialize(data) == {"r": "ShardFailed: shard 1: member 7 cannot be read", "a": [1]}
    with pytest.raises(TypeError, match="set is not JSON serialisable"):
        serialize({"r": {1}})
    with pytest.raises(ValueError, match="JSON object"):
        deserialize(b"[1]")


def test_an_atomic_write_that_fails_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "t.jsonl"
    target.write_text("old\n")

    def fail(stream: Any) -> int:
        stream.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fail)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]


def test_merge_concatenates_shards_and_reads_exact_money(tmp_path: Path) -> None:
    one, two = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    row = (
        '{"member_id":"%s","created_at":null,"amount":%s,"new_balance":null,'
        '"reason":"r","note":null,"id":"x"}\n'
    )
    one.write_text(row % ("a", "10.10") + row % ("a", "-0.10"))
    two.write_text(row % ("b", "1E+2"))

    assert merge_jsonl([one, two], tmp_path / "all.jsonl") == 3
    assert (tmp_path / "all.jsonl").read_text() == one.read_text() + two.read_text()
    amounts = [row[2] for row in read_rows([one, two])]
    assert amounts == [Decimal("10.10"), Decimal("-0.10"), Decimal("1E+2")]
    assert [str(a) for a in amounts] == ["10.10", "-0.10", "1E+2"]


# --- the journal -----------------------------------------------------------------------


def test_the_journal_keeps_committed_pages_and_positions(tmp_path: Path) -> None:
    path = tmp_path / "j" / "shard.sqlite"
    journal = ShardJournal(path)
    assert journal.begin_run(["a", "b"]) == 1
    journal.record_page("a", ["1\n", "2\n"], LedgerPosition.after("c1"))
    journal.commit()
    journal.record_page("b", ["lost\n"], LedgerPosition.FINISHED)  # never committed
    journal.close()

    journal = ShardJournal(path)
    assert journal.begin_run(["a", "b"]) == 1  # the last run made progress
    assert journal.unfinished() == [("a", LedgerPosition.after("c1")), ("b", LedgerPosition.START)]
    journal.record_page("b", ["3\n"], LedgerPosition.FINISHED)
    journal.record_page("a", ["4\n"], LedgerPosition.FINISHED)
    journal.commit()
    out = io.StringIO()

    assert journal.write_rows(out) == 4
    assert out.getvalue() == "1\n2\n4\n3\n"  # members in shard order, each ledger in order
    assert journal.row_count == 4
    assert journal.unfinished() == []
    journal.delete()
    assert list(path.parent.iterdir()) == []


def test_a_journal_counts_runs_without_progress_and_remembers_errors(tmp_path: Path) -> None:
    path = tmp_path / "shard.sqlite"
    for expected in (1, 2, 3):
        journal = ShardJournal(path)
        assert journal.begin_run(["a"]) == expected
        journal.close()
    journal = ShardJournal(path)
    journal.begin_run(["a"])
    assert journal.last_error() is None
    journal.record_error("a: ServerError: HTTP 503")
    journal.commit()  # nothing pending: no change
    assert journal.stalled_runs() == 4
    assert journal.last_error() == "a: ServerError: HTTP 503"
    journal.close()


def test_a_journal_belongs_to_its_members_and_one_run(tmp_path: Path) -> None:
    path = tmp_path / "shard.sqlite"
    journal = ShardJournal(path)
    journal.begin_run(["a", "b"])
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            ShardJournal(path).begin_run(["a", "b"])
    finally:
        journal.close()
    with pytest.raises(ValueError, match="shard with other members"):
        ShardJournal(path).begin_run(["a", "c"])


# --- the shard job -------------------------------------------------------------------


async def test_a_shard_is_written_whole_then_never_read_again(
    sandbox: Sandbox, client: InveterateClient, tmp_path: Path
) -> None:
    members = sandbox.seed_members(30, credits_per_member=5, seed=3)
    spec = spec_for(tmp_path, members, page_size=2)

    summary = await run_shard(client, spec, concurrency=4, job_timeout=60, run=1)

    assert summary == {"shard": 3, "members": 30, "credits": 150, "runs": 1}
    assert shard_file(tmp_path, 3).read_text() == await expected_text(client, members)
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # noqa: ASYNC240
        ".inveterate",
        "shard-000003.jsonl",
    ]
    assert not journal_file(tmp_path, 3).exists()
    sandbox.reset_stats()
    assert await run_shard(client, spec, concurrency=4, job_timeout=60, run=2) == {
        **summary,
        "runs": 2,
    }
    assert sandbox.requests == []


async def test_slices_resume_every_member_from_its_position(
    sandbox: Sandbox, client: InveterateClient, tmp_path: Path
) -> None:
    members = sandbox.seed_members(8, credits_per_member=6, seed=1)
    sandbox.latency = 0.05  # 48 pages, 4 at a time: at least 0.6 s, two slices or more
    spec = spec_for(tmp_path, members, page_size=1)
    runs = 0
    delays = []
    summary = None
    while summary is None and runs < 50:
        runs += 1
        try:
            summary = await run_shard(client, spec, concurrency=4, job_timeout=0.5, run=runs)
        except Retry as retry:
            delays.append(retry.defer_score)
    sandbox.latency = 0

    assert summary is not None
    assert delays == [0] * (runs - 1)  # each slice ended and went on at once

    assert runs >= 2
    pages = Counter((r.customer_id, r.cursor) for r in gets(sandbox))
    # Every page read; read again only if in flight or queued when a slice ended: at most
    # one per lane and one per queue slot (2 x concurrency) for each slice.
    assert len(pages) == 48
    assert sum(pages.values()) - 48 <= 2 * 4 * (runs - 1)
    assert summary["credits"] == 48
    assert shard_file(tmp_path, 3).read_text() == await expected_text(client, members)


async def test_a_failed_member_resumes_from_its_position(
    sandbox: Sandbox, patient: InveterateClient, tmp_path: Path
) -> None:
    sandbox.add_credits("m", ["1.00", "2.00", "3.00"])
    first = await patient.get_credits_page("m", limit=1)
    journal = ShardJournal(journal_file(tmp_path, 3))
    journal.begin_run(["m"])
    journal.record_page("m", [export_line("m", c) for c in first.credits], first.position)
    journal.commit()
    journal.close()
    sandbox.reset_stats()
    sandbox.fail_next(503, customer_id="m")
    spec = spec_for(tmp_path, ["m"], page_size=1)

    with pytest.raises(Retry) as retried:
        await run_shard(patient, spec, concurrency=2, job_timeout=60)
    summary = await run_shard(patient, spec, concurrency=2, job_timeout=60)

    assert retried.value.defer_score == 2000  # a run with no progress waits longer
    requested = [r.cursor for r in gets(sandbox)]
    assert requested[0] == requested[1] == first.next_cursor  # never from the start
    assert len(requested) == 3
    assert summary["credits"] == 3
    assert shard_file(tmp_path, 3).read_text() == await expected_text(patient, ["m"])


async def test_a_member_that_cannot_be_read_fails_the_shard_and_keeps_the_rest(
    sandbox: Sandbox, patient: InveterateClient, tmp_path: Path
) -> None:
    members = sandbox.seed_members(4, credits_per_member=2)
    sandbox.fail_next(404, customer_id="2")
    spec = spec_for(tmp_path, members)

    with pytest.raises(
        ShardFailed, match=r"shard 3: 1 member\(s\) cannot be read: 2: NotFoundError"
    ):
        await run_shard(patient, spec, concurrency=2, job_timeout=60)
    assert not shard_file(tmp_path, 3).exists()
    sandbox.reset_stats()
    await run_shard(patient, spec, concurrency=2, job_timeout=60)

    assert [r.customer_id for r in gets(sandbox)] == ["2"]  # the others were kept
    assert shard_file(tmp_path, 3).read_text() == await expected_text(patient, members)


async def test_many_failures_are_listed_briefly(
    sandbox: Sandbox, patient: InveterateClient, tmp_path: Path
) -> None:
    members = [str(n) for n in range(1, 8)]
    sandbox.fail_next(404, times=7)

    with pytest.raises(ShardFailed) as failed:
        await run_shard(patient, spec_for(tmp_path, members), concurrency=1, job_timeout=60)

    assert str(failed.value).startswith("shard 3: 7 member(s) cannot be read: 1: NotFoundError")
    assert str(failed.value).endswith("; and 2 more")


async def test_a_refused_key_fails_the_shard_without_showing_the_key(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    wrong = "sk_wrong_9f2c-SECRET"
    async with InveterateClient(wrong, base_url=sandbox.base_url, max_retries=0) as client:
        with pytest.raises(ShardFailed, match="the API key was refused") as failed:
            await run_shard(
                client,
                spec_for(tmp_path, [str(n) for n in range(8)]),
                concurrency=1,
                job_timeout=60,
            )

    assert wrong not in str(failed.value)


async def test_a_shard_that_reads_nothing_five_times_is_given_up(
    sandbox: Sandbox, patient: InveterateClient, tmp_path: Path
) -> None:
    sandbox.fail_next(503, times=100)
    spec = spec_for(tmp_path, ["1", "2"])
    delays = []
    for _ in range(5):
        with pytest.raises(Retry) as retried:
            await run_shard(patient, spec, concurrency=2, job_timeout=60)
        delays.append(retried.value.defer_score)

    with pytest.raises(
        ShardFailed, match=r"nothing read in 5 runs in a row; last error: 2: ServerError"
    ):
        await run_shard(patient, spec, concurrency=2, job_timeout=60)
    assert delays == [2000, 4000, 8000, 16000, 30000]


async def test_a_journal_held_by_another_run_means_later(
    patient: InveterateClient, tmp_path: Path
) -> None:
    holder = ShardJournal(journal_file(tmp_path, 3))
    holder.begin_run(["1"])
    try:
        with pytest.raises(Retry) as retried:
            await run_shard(patient, spec_for(tmp_path, ["1"]), concurrency=1, job_timeout=20)
    finally:
        holder.close()
    assert retried.value.defer_score == 20_000


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ServerError(503, "unavailable"), True),
        (RateLimitError(429, "slow down"), True),
        (APIConnectionError("reset"), True),
        (NotFoundError(404, "no such member"), False),
        (PaginationError("loop"), False),
        (ValueError("bad id"), False),
    ],
)
def test_which_failures_another_run_may_fix(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


# --- the worker's hooks and its resilience, without a broker ---------------------------


async def test_the_worker_hooks_own_one_client_and_run_the_job(
    sandbox: Sandbox, client: InveterateClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    members = sandbox.seed_members(5)
    ctx: dict[str, Any] = {
        _worker.OPTIONS_KEY: WorkerOptions(api_key=API_KEY, base_url=sandbox.base_url),
        "job_try": 2,
    }
    caplog.set_level("INFO", logger="inveterate_async.cluster")
    await startup(ctx)
    worker_client = ctx[_worker.CLIENT_KEY]
    try:
        summary = await export_shard(ctx, spec_for(tmp_path, members).to_json())
        with pytest.raises(ValueError, match="shard spec"):
            await export_shard(ctx, {"members": []})
    finally:
        await shutdown(ctx)
    await shutdown(ctx)  # once only

    assert summary == {"shard": 3, "members": 5, "credits": 25, "runs": 2}
    assert _worker.CLIENT_KEY not in ctx
    assert "shard 000003: run 2 finished, 25 credits" in caplog.text
    assert API_KEY not in repr(ctx) + caplog.text
    with pytest.raises(Exception, match="closed"):
        await worker_client.get_credits_page("1")


async def test_a_stopped_run_is_logged(
    sandbox: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx: dict[str, Any] = {
        _worker.OPTIONS_KEY: WorkerOptions(
            api_key=API_KEY, base_url=sandbox.base_url, max_retries=0
        )
    }
    sandbox.fail_next(503)
    caplog.set_level("INFO", logger="inveterate_async.cluster")
    await startup(ctx)
    try:
        with pytest.raises(Retry):
            await export_shard(ctx, spec_for(tmp_path, ["1"]).to_json())
    finally:
        await shutdown(ctx)
    assert "shard 000003: run 1 stopped (Retry)" in caplog.text


@pytest.fixture
def quiet_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterWorker]:
    monkeypatch.setattr(_worker, "_BROKER_PAUSE_SECONDS", 0)
    options = WorkerOptions(api_key=API_KEY, job_timeout=4, max_jobs=2)
    settings = worker_settings("redis://127.0.0.1:9/0", options)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield ClusterWorker(**settings, handle_signals=False)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_a_killed_workers_shard_waits_one_and_a_half_job_timeouts(
    quiet_worker: ClusterWorker,
) -> None:
    assert quiet_worker.in_progress_timeout_s == recovery_seconds(4) == 6
    assert recovery_seconds(20) == 30  # the default: about half a minute


def test_a_broker_error_in_a_poll_is_waited_out(
    quiet_worker: ClusterWorker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: Worker) -> None:
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(Worker, "_poll_iteration", broken)

    quiet_worker.loop.run_until_complete(quiet_worker._poll_iteration())

    assert "broker unavailable (ConnectionError: Connection refused); retrying" in caplog.text


def test_a_job_slot_is_given_back_when_the_broker_fails_mid_start(
    quiet_worker: ClusterWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def start_then_fail(self: Worker, job_ids: list[bytes]) -> None:
        await self.sem.acquire()
        self.job_counter += 1
        raise WatchError("A ConnectionError occurred on while watching one or more keys")

    monkeypatch.setattr(Worker, "start_jobs", start_then_fail)

    with pytest.raises(WatchError):
        quiet_worker.loop.run_until_complete(quiet_worker.start_jobs([b"j1", b"j2"]))

    assert quiet_worker.job_counter == 0
    assert quiet_worker.sem._value == quiet_worker.max_jobs + 1


def test_a_full_worker_starts_nothing_more(quiet_worker: ClusterWorker) -> None:
    quiet_worker.job_counter = quiet_worker.max_jobs

    quiet_worker.loop.run_until_complete(quiet_worker.start_jobs([b"j1"]))

    assert quiet_worker.tasks == {}


def test_shutdown_survives_a_job_cancelled_before_it_began(quiet_worker: ClusterWorker) -> None:
    loop = quiet_worker.loop

    async def cancelled() -> None:
        task = asyncio.ensure_future(asyncio.sleep(60))
        await asyncio.sleep(0)
        task.cancel()
        quiet_worker.tasks["j1"] = task
        await quiet_worker.close()

    loop.run_until_complete(cancelled())

    assert quiet_worker.tasks == {}


# --- the import rules of the extra ------------------------------------------------------


def imports_the_extra(imp: Import) -> bool:
    return any(within(imp.target, name) for name in (f"{PACKAGE}.cluster", "arq", "redis"))


def test_only_the_cluster_and_its_commands_import_arq_or_redis() -> None:
    package = parse_package()
    commands = ("_cluster", "_cluster_common", "_cluster_worker")
    allowed = (f"{PACKAGE}.cluster", *(f"{PACKAGE}.cli.{name}" for name in commands))
    found = [
        str(imp)
        for name, imports in package.items()
        if not any(within(name, prefix) for prefix in allowed)
        for imp in imports
        if imports_the_extra(imp)
    ]
    assert not found, found
    assert any(imp.target.startswith("arq") for imp in package[f"{PACKAGE}.cluster._worker"])


def test_the_cluster_never_imports_the_cli() -> None:
    package = parse_package()
    found = [
        str(imp)
        for name, imports in package.items()
        if within(name, f"{PACKAGE}.cluster")
        for imp in imports
        if within(imp.target, f"{PACKAGE}.cli")
    ]
    assert not found, found
