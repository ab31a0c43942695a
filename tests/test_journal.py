"""The SQLite journal: its file, the lock between processes, conflicts, and crash safety."""

from __future__ import annotations

import asyncio
import os
import pickle
import random
import signal
import sqlite3
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from inveterate_async import (
    AdjustmentState,
    CandidateEntry,
    CreditAdjustment,
    Journal,
    JournalConflictError,
    JournalError,
    JournalLockedError,
)

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)


def adjustment(ref: str, amount: str = "5.00", **kwargs: object) -> CreditAdjustment:
    return CreditAdjustment(ref, kwargs.pop("customer_id", "42"), amount, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "batch.sqlite"


@pytest.fixture
async def journal(path: Path) -> AsyncIterator[Journal]:
    async with Journal(path) as opened:
        yield opened


async def test_a_new_journal_is_wal_synchronous_full_and_marked(journal: Journal) -> None:
    await journal._merge([adjustment("a")], NOW, write=True)
    connection = sqlite3.connect(journal.path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA application_id").fetchone() == (0x49564A31,)
        assert connection.execute("SELECT ref, state FROM adjustments").fetchall() == [
            ("a", "pending")
        ]
    finally:
        connection.close()
    # The connection lives on the journal's own thread; sqlite3 refuses it elsewhere.
    with pytest.raises(sqlite3.ProgrammingError):
        journal._opened()._db.execute("PRAGMA synchronous")
    file = journal._opened()
    synchronous = await journal._run(lambda: file._db.execute("PRAGMA synchronous").fetchone())
    assert synchronous[0] == 2  # FULL
    assert repr(journal) == f"Journal({journal.path!r}, read_only=False)"
    holder = await asyncio.to_thread(Path(f"{journal.path}.lock").read_text)
    assert holder.startswith(f"pid {os.getpid()} on ")


async def test_rows_keep_content_and_order(journal: Journal) -> None:
    batch = [
        adjustment("b", "-2.50", note="Claw back", force=True),
        adjustment("a", "10", customer_id=7),
    ]
    rows = await journal._merge(batch, NOW, write=True)
    assert [row.adjustment for row in rows] == batch
    assert [row.state for row in rows] == [AdjustmentState.PENDING] * 2
    assert rows[1].adjustment.customer_id == "7"
    assert str(rows[0].adjustment.amount) == "-2.50"  # exact digits kept


async def test_same_content_is_not_a_conflict(journal: Journal) -> None:
    await journal._merge([adjustment("a", "5.00", note=None, force=None)], NOW, write=True)
    rows = await journal._merge([adjustment("a", "5.0", note="", force=False)], NOW, write=True)
    assert str(rows[0].adjustment.amount) == "5.00"  # the first content stays


async def test_different_content_is_refused_and_nothing_changes(journal: Journal) -> None:
    await journal._merge([adjustment("a"), adjustment("b")], NOW, write=True)
    await journal._mark_sending("a", None, NOW)
    await journal._record("a", AdjustmentState.APPLIED, NOW, entry_id="e1")
    await journal._mark_sending("b", None, NOW)
    await journal._record("b", AdjustmentState.UNKNOWN, NOW, error="ServerError: 500")
    batch = [adjustment("new"), adjustment("a", "6.00"), adjustment("b", note="other")]

    with pytest.raises(JournalConflictError) as info:
        await journal._merge(batch, NOW, write=True)

    assert info.value.refs == ("a", "b")
    assert info.value.path == journal.path
    assert "a (applied: amount '5.00' -> '6.00')" in str(info.value)
    assert "b (unknown: note None -> 'other')" in str(info.value)
    assert [row.ref for row in await journal.rows()] == ["a", "b"]  # "new" not added either
    assert pickle.loads(pickle.dumps(info.value)).refs == ("a", "b")


async def test_many_conflicts_are_summed_up(journal: Journal) -> None:
    refs = [f"r{n}" for n in range(8)]
    await journal._merge([adjustment(ref) for ref in refs], NOW, write=True)
    for ref in refs:
        await journal._record(ref, AdjustmentState.APPLIED, NOW)
    with pytest.raises(JournalConflictError, match=r"; and 3 more$"):
        await journal._merge([adjustment(ref, "1") for ref in refs], NOW, write=True)


async def test_rows_nothing_was_applied_for_can_be_edited(journal: Journal) -> None:
    await journal._merge([adjustment("never-sent"), adjustment("rejected")], NOW, write=True)
    await journal._mark_sending("rejected", "n", NOW)
    await journal._record("rejected", AdjustmentState.REJECTED, NOW, error="BadRequestError: x")
    edited = [adjustment("never-sent", "1.00"), adjustment("rejected", "2.00", customer_id="9")]

    preview = await journal._merge(edited, NOW, write=False)
    assert [(r.ref, r.state, r.adjustment.amount) for r in preview] == [
        ("never-sent", AdjustmentState.PENDING, Decimal("1.00")),
        ("rejected", AdjustmentState.PENDING, Decimal("2.00")),
    ]
    assert (await journal.rows())[1].state is AdjustmentState.REJECTED  # a preview writes nothing

    rows = await journal._merge(edited, NOW, write=True)
    assert [row.adjustment for row in rows] == edited
    assert rows[1].state is AdjustmentState.PENDING
    assert rows[1].sent_note is None
    assert rows[1].attempts == 1  # the history of attempts is kept


async def test_sending_is_durable_and_recovered_as_unknown(path: Path) -> None:
    async with Journal(path) as journal:
        await journal._merge([adjustment("a"), adjustment("b")], NOW, write=True)
    # A process marks a row "sending" and is killed right after the commit returns.
    code = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from datetime import datetime, timezone
        from inveterate_async import Journal

        async def main():
            journal = await Journal({str(path)!r}).open()
            await journal._mark_sending("a", "Gold [ref:a]", datetime.now(timezone.utc))
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    assert await asyncio.wait_for(child.wait(), 60) == -signal.SIGKILL

    async with Journal(path) as journal:
        (row, _) = await journal.rows()
        assert (row.state, row.attempts, row.sent_note) == (
            AdjustmentState.SENDING,
            1,
            "Gold [ref:a]",
        )
        assert row.first_sent_at is not None
        assert row.first_sent_at == row.last_sent_at
        recovered = await journal._recover(NOW)
        assert [(r.ref, r.state) for r in recovered] == [("a", AdjustmentState.UNKNOWN)]
        assert recovered[0].error == "the process stopped while sending: it may have been applied"
        assert await journal._recover(NOW) == []


async def test_claims_and_candidates_are_recorded(journal: Journal) -> None:
    await journal._merge([adjustment("a"), adjustment("b")], NOW, write=True)
    candidate = CandidateEntry("cr_1", Decimal("5.00"), "Gold", NOW)
    undated = CandidateEntry("cr_2", Decimal("5.00"), None, None)
    await journal._record("a", AdjustmentState.APPLIED, NOW, entry_id="cr_9")
    row = await journal._record(
        "b", AdjustmentState.NEEDS_REVIEW, NOW, candidates=[candidate, undated]
    )
    assert row.candidates == (candidate, undated)
    assert await journal._claimed("42") == {"cr_9"}
    assert await journal._claimed("7") == set()
    with pytest.raises(JournalError, match="UNIQUE"):  # one entry is never claimed twice
        await journal._record("b", AdjustmentState.APPLIED, NOW, entry_id="cr_9")


async def test_the_report_counts_every_state(journal: Journal) -> None:
    batch = [adjustment("a", "5.00"), adjustment("b", "-1.25"), adjustment("c", "2")]
    await journal._merge(batch, NOW, write=True)
    await journal._record("a", AdjustmentState.APPLIED, NOW)
    await journal._record("b", AdjustmentState.REJECTED, NOW, error="BadRequestError: no")
    report = await journal.report()
    assert report.total == 3
    assert report.counts[AdjustmentState.APPLIED] == 1
    assert report.counts[AdjustmentState.NEEDS_REVIEW] == 0
    assert report.sums[AdjustmentState.REJECTED] == Decimal("-1.25")
    assert [row.ref for row in report.attention] == ["b", "c"]
    assert not report.all_applied


async def test_a_second_journal_on_the_same_file_is_locked_out(journal: Journal) -> None:
    with pytest.raises(JournalLockedError) as info:
        await Journal(journal.path).open()
    assert f"pid {os.getpid()} on " in info.value.holder
    assert "nothing was sent" in str(info.value)
    await journal.close()
    async with Journal(journal.path) as again:  # released on close
        assert again.is_open


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
async def test_the_lock_is_held_by_another_process_and_freed_when_it_is_killed(path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        from inveterate_async import Journal

        async def main():
            await Journal({str(path)!r}).open()
            print("locked", flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 60) == b"locked\n"
        with pytest.raises(JournalLockedError, match=f"in use by pid {child.pid} on "):
            await Journal(path).open()
        async with Journal(path, read_only=True) as reader:  # reading needs no lock
            assert await reader.rows() == []
    finally:
        child.kill()
        await child.wait()
    async with Journal(path) as journal:  # the OS released the lock of the killed process
        assert journal.is_open


async def test_read_only_reads_and_refuses_writes(journal: Journal, path: Path) -> None:
    await journal._merge([adjustment("a")], NOW, write=True)
    async with Journal(path, read_only=True) as reader:
        assert reader.read_only
        assert [row.ref for row in await reader.rows()] == ["a"]
        with pytest.raises(JournalError, match="opened read-only"):
            await reader._record("a", AdjustmentState.APPLIED, NOW)


async def test_read_only_needs_an_existing_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal at"):
        await Journal(tmp_path / "missing.sqlite", read_only=True).open()
    assert not (tmp_path / "missing.sqlite").exists()


async def test_a_file_left_before_its_schema_reads_as_empty(tmp_path: Path) -> None:
    # What a process killed while creating the journal leaves: a database without tables.
    blank = tmp_path / "blank.sqlite"
    connection = sqlite3.connect(blank)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    async with Journal(blank, read_only=True) as reader:
        assert await reader.rows() == []
    async with Journal(blank) as journal:  # and opening it for writing creates the schema
        await journal._merge([adjustment("a")], NOW, write=True)
        assert [row.ref for row in await journal.rows()] == ["a"]


@pytest.mark.parametrize("read_only", [False, True])
async def test_other_files_are_not_journals(tmp_path: Path, read_only: bool) -> None:
    other = tmp_path / "other.sqlite"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE t (x)")
    connection.close()
    with pytest.raises(JournalError, match="is not an inveterate journal"):
        await Journal(other, read_only=read_only).open()
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database at all" * 100)
    with pytest.raises(JournalError, match=r"cannot use .* as a journal"):
        await Journal(text, read_only=read_only).open()


async def test_a_journal_from_a_newer_version_is_refused(path: Path) -> None:
    async with Journal(path):
        pass
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(JournalError, match="newer inveterate-async"):
        await Journal(path).open()


async def test_an_unwritable_place_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot use"):
        await Journal(tmp_path / "no-such-dir" / "j.sqlite").open()


async def test_open_close_misuse(path: Path) -> None:
    journal = Journal(path)
    with pytest.raises(RuntimeError, match="not open"):
        await journal.rows()
    await journal.open()
    with pytest.raises(RuntimeError, match="already open"):
        await journal.open()
    await journal.close()
    await journal.close()
    assert not journal.is_open


async def test_a_failed_commit_fails_every_update_in_it(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal._merge([adjustment("a"), adjustment("b")], NOW, write=True)

    def disk_error(updates: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(journal._opened(), "transaction", disk_error)
    results = await asyncio.gather(
        journal._record("a", AdjustmentState.APPLIED, NOW),
        journal._record("b", AdjustmentState.APPLIED, NOW),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [JournalError, JournalError]
    assert str(results[0]) == f"journal {journal.path}: disk I/O error"
    monkeypatch.undo()
    assert [row.state for row in await journal.rows()] == [AdjustmentState.PENDING] * 2


async def test_an_update_that_breaks_rolls_back_its_whole_commit(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal._merge([adjustment("a")], NOW, write=True)

    def broken(*args: object) -> None:
        journal._opened()._db.execute("UPDATE adjustments SET state = 'applied'")
        raise RuntimeError("a bug")

    monkeypatch.setattr(journal._opened(), "_update", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        await journal._record("a", AdjustmentState.APPLIED, NOW)
    monkeypatch.undo()
    assert (await journal.rows())[0].state is AdjustmentState.PENDING


async def test_a_commit_cut_short_by_the_loop_cancels_its_waiters(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal._merge([adjustment("a"), adjustment("b")], NOW, write=True)
    started = threading.Event()
    release = threading.Event()
    real = journal._opened().transaction

    def slow(updates: list[Any]) -> list[Any]:
        started.set()
        release.wait(30)
        return real(updates)

    monkeypatch.setattr(journal._opened(), "transaction", slow)
    first = asyncio.ensure_future(journal._record("a", AdjustmentState.APPLIED, NOW))
    await asyncio.to_thread(started.wait, 30)  # "a" is being committed
    second = asyncio.ensure_future(journal._record("b", AdjustmentState.APPLIED, NOW))
    await asyncio.sleep(0)  # "b" waits for the next commit
    assert journal._committer is not None
    journal._committer.cancel()  # what asyncio.run does to leftover tasks at the end
    release.set()
    for waiter in (first, second):
        with pytest.raises(asyncio.CancelledError):
            await waiter
    await journal.close()  # waits for nothing that was cancelled
    monkeypatch.undo()
    async with Journal(journal.path, read_only=True) as reader:
        # "a" was committed all the same (its commit had started); "b" never was.
        assert [row.state for row in await reader.rows()] == [
            AdjustmentState.APPLIED,
            AdjustmentState.PENDING,
        ]


async def test_a_commit_cancelled_before_it_started_cancels_its_waiters(
    journal: Journal,
) -> None:
    await journal._merge([adjustment("a")], NOW, write=True)
    waiter = asyncio.ensure_future(journal._record("a", AdjustmentState.APPLIED, NOW))
    await asyncio.sleep(0)
    assert journal._committer is not None
    journal._committer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_a_failed_insert_adds_nothing(journal: Journal) -> None:
    with pytest.raises(JournalError, match="UNIQUE"):
        await journal._merge([adjustment("a"), adjustment("a", "2")], NOW, write=True)
    assert await journal.rows() == []


async def test_updates_queued_at_any_moment_are_all_committed(journal: Journal) -> None:
    refs = [f"r{n}" for n in range(300)]
    await journal._merge([adjustment(ref) for ref in refs], NOW, write=True)
    rng = random.Random(3)

    async def update(ref: str, delay: float) -> None:
        await asyncio.sleep(delay)  # spread over many commits
        await journal._record(ref, AdjustmentState.APPLIED, NOW)

    await asyncio.gather(*(update(ref, rng.uniform(0, 0.2)) for ref in refs))
    assert {row.state for row in await journal.rows()} == {AdjustmentState.APPLIED}


async def test_a_commit_that_ended_drops_nothing_queued_after_it(journal: Journal) -> None:
    await journal._merge([adjustment("a"), adjustment("b")], NOW, write=True)
    await journal._record("a", AdjustmentState.APPLIED, NOW)
    ended = journal._committer
    assert ended is not None
    assert ended.done()
    # "b" is queued after the committer ended, before its done-callback ran: the race a
    # busy loop (HTTP answers arriving) makes likely. The callback must not drop it.
    waiter = asyncio.ensure_future(journal._record("b", AdjustmentState.APPLIED, NOW))
    await asyncio.sleep(0)
    journal._drop_queued(ended)
    assert (await waiter).state is AdjustmentState.APPLIED
