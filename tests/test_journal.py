"""The SQLite journal: its file and schema, the lock on it, compare-and-set updates, merging
a batch, conflicts, crash safety and group commits."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pickle
import random
import signal
import socket
import sqlite3
import stat
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
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

from .bulk_helpers import bump_holder_run, journal_states, make_v1_journal

A = AdjustmentState
NOW = "2026-11-02T10:00:00+00:00"


def adjustment(ref: str, amount: str = "5.00", **kwargs: Any) -> CreditAdjustment:
    return CreditAdjustment(ref, kwargs.pop("customer_id", "42"), amount, **kwargs)


def sql(path: Path, query: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def lock_file_exists(path: Path) -> bool:
    """Whether the lock file of releases that wrote journal version 1 is beside ``path``."""
    return path.with_name(f"{path.name}.lock").exists()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "batch.sqlite"


@pytest.fixture
async def journal(path: Path) -> AsyncIterator[Journal]:
    async with Journal(path) as opened:
        yield opened


async def sent(journal: Journal, ref: str, note: str | None = None) -> None:
    """Mark a pending row as sent (unknown), as a run does before its POST."""
    assert await journal._mark_sent(ref, A.PENDING, note, 1.0)


# --- the file ------------------------------------------------------------------------------


async def test_a_new_journal_is_wal_synchronous_full_version_2_and_marked(
    journal: Journal, path: Path
) -> None:
    await journal._merge([adjustment("a")])
    assert sql(path, "PRAGMA journal_mode") == [("wal",)]
    assert sql(path, "PRAGMA application_id") == [(0x49564A31,)]
    assert sql(path, "PRAGMA user_version") == [(2,)]
    assert sql(path, "SELECT ref, state, run FROM adjustments") == [("a", "pending", 1)]
    # Who holds it is in the file itself: there is no lock file beside it any more.
    assert sql(path, "SELECT run, pid, host FROM holder") == [
        (1, os.getpid(), socket.gethostname())
    ]
    assert not await asyncio.to_thread(os.path.exists, f"{path}.lock")
    assert stat.S_IMODE((await asyncio.to_thread(os.stat, path)).st_mode) == 0o600
    # The connection lives on the journal's own thread; sqlite3 refuses it elsewhere.
    with pytest.raises(sqlite3.ProgrammingError):
        journal._opened().db.execute("PRAGMA synchronous")
    file = journal._opened()
    synchronous = await journal._run(lambda: file.db.execute("PRAGMA synchronous").fetchone())
    assert synchronous[0] == 2  # FULL
    assert repr(journal) == f"Journal({journal.path!r}, read_only=False)"


async def test_each_writer_takes_the_next_run_number(path: Path) -> None:
    for run in (1, 2, 3):
        async with Journal(path) as journal:
            assert journal._run_number == run
    async with Journal(path, read_only=True) as reader:
        assert reader._run_number == 0
    assert sql(path, "SELECT run FROM holder") == [(3,)]


async def test_rows_keep_content_and_order(journal: Journal) -> None:
    batch = [
        adjustment("b", "-2.50", note="Claw back", force=True),
        adjustment("a", "10", customer_id=7),
    ]
    await journal._merge(batch)
    rows = await journal.rows()
    assert [row.adjustment for row in rows] == batch
    assert [row.state for row in rows] == [A.PENDING] * 2
    assert rows[1].adjustment.customer_id == "7"
    assert str(rows[0].adjustment.amount) == "-2.50"  # exact digits kept


async def test_iter_rows_reads_every_row_in_order_or_those_in_some_states(
    journal: Journal,
) -> None:
    refs = [f"r{n:04}" for n in range(1234)]
    await journal._merge([adjustment(ref) for ref in refs])
    for ref in refs[::100]:
        assert await journal._record(ref, A.PENDING, A.APPLIED)
    await sent(journal, "r0001")
    assert [row.ref async for row in journal.iter_rows()] == refs
    assert [row.ref async for row in journal.iter_rows(states=[A.APPLIED])] == refs[::100]
    unknown_or_applied = [row.ref async for row in journal.iter_rows({A.UNKNOWN, A.APPLIED})]
    assert unknown_or_applied == sorted([*refs[::100], "r0001"])
    assert [row async for row in journal.iter_rows(states=[A.NEEDS_REVIEW])] == []
    assert [row.ref for row in await journal.rows()] == refs


# --- merging a batch -----------------------------------------------------------------------


async def test_same_content_is_not_a_conflict(path: Path) -> None:
    async with Journal(path) as journal:
        await journal._merge([adjustment("a", "5.00", note=None, force=None)])
    async with Journal(path) as journal:
        await journal._merge([adjustment("a", "5.0", note="", force=False)])
        (row,) = await journal.rows()
    assert str(row.adjustment.amount) == "5.00"  # the first content stays
    assert sql(path, "SELECT run FROM adjustments") == [(2,)]  # listed by the second run


async def test_different_content_is_refused_and_nothing_changes(path: Path) -> None:
    async with Journal(path) as journal:
        await journal._merge([adjustment("a"), adjustment("b")])
        await sent(journal, "a")
        assert await journal._record("a", A.UNKNOWN, A.APPLIED, entry_id="e1")
        await sent(journal, "b")
        assert await journal._record("b", A.UNKNOWN, A.UNKNOWN, error="ServerError: 500")
    before = sql(path, "SELECT * FROM adjustments")
    batch = [adjustment("new"), adjustment("a", "6.00"), adjustment("b", note="other")]

    async with Journal(path) as journal:
        with pytest.raises(JournalConflictError) as info:
            await journal._merge(batch)
        assert [row.ref for row in await journal.rows()] == ["a", "b"]  # "new" not added either

    assert info.value.refs == ("a", "b")
    assert info.value.path == journal.path
    assert "a (applied: amount '5.00' -> '6.00')" in str(info.value)
    assert "b (unknown: note None -> 'other')" in str(info.value)
    assert pickle.loads(pickle.dumps(info.value)).refs == ("a", "b")
    assert sql(path, "SELECT * FROM adjustments") == before  # not even listed by this run


async def test_many_conflicts_are_summed_up(path: Path) -> None:
    refs = [f"r{n}" for n in range(8)]
    async with Journal(path) as journal:
        await journal._merge([adjustment(ref) for ref in refs])
        for ref in refs:
            assert await journal._record(ref, A.PENDING, A.APPLIED)
    async with Journal(path) as journal:
        with pytest.raises(JournalConflictError, match=r"; and 3 more$"):
            await journal._merge([adjustment(ref, "1") for ref in refs])


async def test_rows_nothing_was_applied_for_can_be_edited(path: Path) -> None:
    async with Journal(path) as journal:
        await journal._merge([adjustment("never-sent"), adjustment("rejected")])
        await sent(journal, "rejected", "n")
        assert await journal._record("rejected", A.UNKNOWN, A.REJECTED, error="BadRequestError")
    edited = [adjustment("never-sent", "1.00"), adjustment("rejected", "2.00", customer_id="9")]
    async with Journal(path) as journal:
        await journal._merge(edited)
        rows = await journal.rows()
    assert [row.adjustment for row in rows] == edited
    assert [row.state for row in rows] == [A.PENDING, A.PENDING]
    assert (rows[1].sent_note, rows[1].error) == (None, None)
    assert rows[1].attempts == 1  # the history of attempts is kept


@pytest.mark.parametrize(
    "refs",
    [["x", "y", "x"], [f"r{n}" for n in range(1100)] + ["r7"], ["a", "x", "x"]],
    ids=["in-one-chunk", "chunks-apart", "an-existing-ref"],
)
async def test_a_ref_given_twice_is_refused_and_nothing_changes(
    path: Path, refs: list[str]
) -> None:
    async with Journal(path) as journal:
        await journal._merge([adjustment("a"), adjustment("b")])
        assert await journal._record("a", A.PENDING, A.APPLIED)
    before = sql(path, "SELECT * FROM adjustments")
    async with Journal(path) as journal:
        with pytest.raises(ValueError, match=f"ref '{refs[-1]}' is given twice"):
            await journal._merge(adjustment(ref) for ref in refs)
        assert [row.ref for row in await journal.rows()] == ["a", "b"]
    assert sql(path, "SELECT * FROM adjustments") == before


async def test_a_batch_that_fails_while_read_adds_nothing(journal: Journal) -> None:
    def batch() -> Iterator[CreditAdjustment]:
        for n in range(1200):
            yield adjustment(f"r{n}")
        raise OSError("the input file went away")

    with pytest.raises(OSError, match="went away"):
        await journal._merge(batch())
    with pytest.raises(ValueError, match="not a CreditAdjustment: str"):
        await journal._merge([adjustment("a"), "b"])  # type: ignore[list-item]
    assert await journal.rows() == []
    await journal._merge([adjustment("a")])  # the journal is still usable
    assert [row.ref for row in await journal.rows()] == ["a"]


# --- compare-and-set updates ---------------------------------------------------------------


async def test_state_changes_are_compare_and_set(journal: Journal) -> None:
    await journal._merge([adjustment("a")])
    assert not await journal._record("a", A.UNKNOWN, A.APPLIED, entry_id="e1")
    assert not await journal._mark_sent("a", A.NOT_APPLIED, "n", 1.0)
    assert not await journal._record("missing", A.PENDING, A.APPLIED)
    (row,) = await journal.rows()
    assert (row.state, row.attempts, row.entry_id) == (A.PENDING, 0, None)
    assert await journal._mark_sent("a", A.PENDING, "n [ref:a]", 7.5)
    assert not await journal._mark_sent("a", A.PENDING, "n [ref:a]", 8.0)  # sent once
    assert await journal._record("a", A.UNKNOWN, A.APPLIED, entry_id="e1")
    (row,) = await journal.rows()
    assert (row.state, row.attempts, row.sent_note, row.entry_id) == (
        A.APPLIED,
        1,
        "n [ref:a]",
        "e1",
    )
    assert sql(Path(journal.path), "SELECT sent_run, sent_clock FROM adjustments") == [(1, 7.5)]


async def test_a_resend_is_counted_and_keeps_the_first_send_time(journal: Journal) -> None:
    await journal._merge([adjustment("a")])
    await sent(journal, "a", "n")
    assert await journal._record("a", A.UNKNOWN, A.NOT_APPLIED)
    assert await journal._mark_sent("a", A.NOT_APPLIED, "n", 2.0)
    (row,) = await journal.rows()
    assert (row.state, row.attempts, row.resends) == (A.UNKNOWN, 2, 1)
    assert row.first_sent_at is not None
    assert row.last_sent_at is not None
    assert row.first_sent_at <= row.last_sent_at
    assert sql(Path(journal.path), "SELECT resent_run FROM adjustments") == [(1,)]


async def test_a_writer_whose_journal_was_taken_changes_nothing(
    journal: Journal, path: Path
) -> None:
    await journal._merge([adjustment("a")])
    bump_holder_run(path)  # what another writer opening the file does
    with pytest.raises(JournalLockedError, match="opened for writing by another run"):
        await journal._mark_sent("a", A.PENDING, "n", 1.0)
    with pytest.raises(JournalLockedError):
        await journal._record("a", A.PENDING, A.APPLIED)
    assert journal_states(path) == {"a": "pending"}
    assert sql(path, "SELECT attempts FROM adjustments") == [(0,)]


async def test_claims_and_candidates_are_recorded(journal: Journal) -> None:
    await journal._merge([adjustment("a"), adjustment("b")])
    candidate = CandidateEntry("cr_1", Decimal("5.00"), "Gold", None)
    undated = CandidateEntry("cr_2", Decimal("5.00"), None, None)
    assert await journal._record("a", A.PENDING, A.APPLIED, entry_id="cr_9")
    assert await journal._record(
        "b", A.PENDING, A.NEEDS_REVIEW, candidates=[candidate, undated], error="2 entries"
    )
    rows = await journal.rows()
    assert rows[1].candidates == (candidate, undated)
    assert rows[1].error == "2 entries"
    assert await journal._claimed("42") == {"cr_9"}
    assert await journal._claimed("7") == set()
    with pytest.raises(JournalError, match="UNIQUE"):  # one entry is never claimed twice
        await journal._record("b", A.NEEDS_REVIEW, A.APPLIED, entry_id="cr_9")
    assert (await journal.rows())[1].state is A.NEEDS_REVIEW


async def test_the_report_counts_every_state(journal: Journal) -> None:
    batch = [adjustment("a", "5.00"), adjustment("b", "-1.25"), adjustment("c", "2")]
    await journal._merge(batch)
    assert await journal._record("a", A.PENDING, A.APPLIED)
    assert await journal._record("b", A.PENDING, A.REJECTED, error="BadRequestError: no")
    report = await journal.report()
    assert report.total == 3
    assert report.counts[A.APPLIED] == 1
    assert report.counts[A.NEEDS_REVIEW] == 0
    assert report.sums[A.REJECTED] == Decimal("-1.25")
    assert [row.ref for row in report.attention] == ["b", "c"]
    assert not report.all_applied
    assert not report.dry_run


async def test_the_report_lists_the_first_thousand_rows_needing_attention(
    journal: Journal,
) -> None:
    refs = [f"r{n:04}" for n in range(1500)]
    await journal._merge([adjustment(ref, "0.01") for ref in refs])
    assert await journal._record("r0000", A.PENDING, A.APPLIED)
    report = await journal.report()
    assert report.total == 1500
    assert report.sums[A.PENDING] == Decimal("14.99")
    assert [row.ref for row in report.attention] == refs[1:1001]


# --- the lock --------------------------------------------------------------------------------


async def test_a_second_journal_on_the_same_file_is_locked_out(journal: Journal) -> None:
    with pytest.raises(JournalLockedError) as info:
        await Journal(journal.path).open()
    assert info.value.holder == f"pid {os.getpid()} (this process)"
    assert "nothing was sent" in str(info.value)
    await journal.close()
    async with Journal(journal.path) as again:  # released on close
        assert again.is_open


async def test_the_lock_is_on_the_file_whatever_name_reaches_it(
    journal: Journal, path: Path, tmp_path: Path
) -> None:
    await journal._merge([adjustment("a")])
    symlink = tmp_path / "symlink.sqlite"
    symlink.symlink_to(path)
    hard_link = tmp_path / "hard-link.sqlite"
    os.link(path, hard_link)
    (tmp_path / "sub").mkdir()
    dotted = tmp_path / "sub" / ".." / path.name
    for name in (symlink, hard_link, dotted):
        with pytest.raises(JournalLockedError):
            await Journal(name).open()
    await journal._merge([adjustment("b")])  # the holder goes on undisturbed
    await journal.close()
    with pytest.raises(JournalError, match="hard links"):  # refused once free: see below
        await Journal(hard_link).open()
    hard_link.unlink()
    async with Journal(symlink) as again:
        assert [row.ref for row in await again.rows()] == ["a", "b"]


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
async def test_the_lock_is_held_by_another_process_and_freed_when_it_is_killed(
    path: Path, tmp_path: Path
) -> None:
    async with Journal(path):
        pass
    symlink = tmp_path / "symlink.sqlite"
    symlink.symlink_to(path)
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        from inveterate_async import Journal

        async def main():
            await Journal({str(symlink)!r}).open()
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
        for name in (path, symlink):
            with pytest.raises(JournalLockedError, match=f"in use by pid {child.pid} on "):
                await Journal(name).open()
        async with Journal(path, read_only=True) as reader:  # reading needs no lock
            assert await reader.rows() == []
    finally:
        child.kill()
        await child.wait()
    async with Journal(path) as journal:  # the OS released the lock of the killed process
        assert journal._run_number == 3


async def mark_sent_and_get_killed(path: Path, ref: str) -> None:
    """A process marks a row sent and is killed right after the commit returns."""
    code = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from inveterate_async import AdjustmentState, Journal

        async def main():
            journal = await Journal({str(path)!r}).open()
            await journal._mark_sent({ref!r}, AdjustmentState.PENDING, "Gold [ref:a]", 12.5)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    assert await asyncio.wait_for(child.wait(), 60) == -signal.SIGKILL


async def test_marked_sent_is_durable_and_left_unknown_by_a_crash(path: Path) -> None:
    async with Journal(path) as journal:
        await journal._merge([adjustment("a"), adjustment("b")])
    await mark_sent_and_get_killed(path, "a")

    assert sql(path, "SELECT sent_run, sent_clock FROM adjustments") == [(2, 12.5), (None, None)]
    async with Journal(path) as journal:  # the lock died with the process
        row, other = await journal.rows()
        assert journal._run_number == 3
    assert (row.state, row.attempts, row.sent_note) == (A.UNKNOWN, 1, "Gold [ref:a]")
    assert row.first_sent_at is not None
    assert row.first_sent_at == row.last_sent_at
    assert (other.state, other.attempts) == (A.PENDING, 0)


async def test_a_hard_link_is_refused_so_a_killed_writers_log_is_never_missed(
    path: Path, tmp_path: Path
) -> None:
    # SQLite keeps the write-ahead log beside the name a file was opened by: through a
    # second name, what the killed writer committed (row "a" marked unknown) would be
    # unseen, and "a" sent again.
    async with Journal(path) as journal:
        await journal._merge([adjustment("a")])
    await mark_sent_and_get_killed(path, "a")
    hard_link = tmp_path / "hard-link.sqlite"
    os.link(path, hard_link)
    for name in (hard_link, path):
        with pytest.raises(JournalError, match="2 hard links"):
            await Journal(name).open()
        with pytest.raises(JournalError, match="2 hard links"):
            await Journal(name, read_only=True).open()
    hard_link.unlink()
    async with Journal(path) as journal:
        (row,) = await journal.rows()
        run = journal._run_number
    assert (row.state, run) == (A.UNKNOWN, 3)


# --- reading, and files that are not (yet) journals -----------------------------------------


async def test_read_only_reads_and_refuses_writes(journal: Journal, path: Path) -> None:
    await journal._merge([adjustment("a")])
    async with Journal(path, read_only=True) as reader:
        assert reader.read_only
        assert [row.ref for row in await reader.rows()] == ["a"]
        with pytest.raises(JournalError, match="opened read-only"):
            await reader._record("a", A.PENDING, A.APPLIED)
    assert journal_states(path) == {"a": "pending"}


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
        assert (await reader.report()).total == 0
    async with Journal(blank) as journal:  # and opening it for writing creates the schema
        await journal._merge([adjustment("a")])
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
    with pytest.raises(JournalError, match=r"cannot (use|read) .* journal"):
        await Journal(text, read_only=read_only).open()


async def test_a_journal_from_a_newer_version_is_refused(path: Path) -> None:
    async with Journal(path):
        pass
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    for read_only in (False, True):
        with pytest.raises(JournalError, match="newer inveterate-async"):
            await Journal(path, read_only=read_only).open()


def _version_1(path: Path) -> None:
    stamp = NOW
    make_v1_journal(
        path,
        [
            {
                "ref": "a",
                "customer_id": "42",
                "amount": "5.00",
                "state": "sending",
                "attempts": 1,
                "sent_note": "Gold [ref:a]",
                "first_sent_at": stamp,
                "last_sent_at": stamp,
            },
            {"ref": "b", "customer_id": "42", "amount": "-1.50", "state": "pending"},
            {"ref": "c", "customer_id": "7", "amount": "2", "state": "applied", "entry_id": "e"},
        ],
    )


async def test_a_version_1_journal_reads_its_sending_rows_as_unknown(path: Path) -> None:
    _version_1(path)
    async with Journal(path, read_only=True) as reader:
        rows = await reader.rows()
        report = await reader.report()
    assert [(row.ref, row.state) for row in rows] == [
        ("a", A.UNKNOWN),
        ("b", A.PENDING),
        ("c", A.APPLIED),
    ]
    assert report.counts[A.UNKNOWN] == 1
    assert report.sums[A.UNKNOWN] == Decimal("5.00")
    assert [row.ref for row in report.attention] == ["a", "b"]
    assert sql(path, "PRAGMA user_version") == [(1,)]  # a reader changes nothing


async def test_a_version_1_journal_is_upgraded_when_opened_for_writing(path: Path) -> None:
    _version_1(path)
    async with Journal(path) as journal:
        assert journal._run_number == 1
        rows = await journal.rows()
        await journal._merge([adjustment("b", "-1.50"), adjustment("d")])
    assert [(row.ref, row.state) for row in rows] == [
        ("a", A.UNKNOWN),
        ("b", A.PENDING),
        ("c", A.APPLIED),
    ]
    assert rows[0].sent_note == "Gold [ref:a]"
    assert sql(path, "PRAGMA user_version") == [(2,)]
    assert sql(path, "SELECT ref, state, run, sent_run FROM adjustments") == [
        ("a", "unknown", 0, None),
        ("b", "pending", 1, None),
        ("c", "applied", 0, None),
        ("d", "pending", 1, None),
    ]
    assert sql(path, "SELECT run, pid FROM holder") == [(1, os.getpid())]


async def test_a_version_1_journal_in_use_by_an_older_release_is_not_upgraded(
    path: Path,
) -> None:
    # Releases that wrote version 1 locked PATH.lock, and do so before reading the version.
    _version_1(path)
    legacy = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(legacy, b"pid 4242 on old-host since 2026-01-01T00:00:00+00:00\n")
        fcntl.flock(legacy, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(JournalLockedError, match="pid 4242 on old-host") as raised:
            await Journal(path).open()
        assert raised.value.holder.startswith("pid 4242 on old-host")
        assert sql(path, "PRAGMA user_version") == [(1,)]
        assert journal_states(path)["a"] == "sending"
    finally:
        os.close(legacy)
    async with Journal(path) as journal:  # the older run ended: upgraded now
        assert [row.state for row in await journal.rows()] == [A.UNKNOWN, A.PENDING, A.APPLIED]
    assert sql(path, "PRAGMA user_version") == [(2,)]
    assert not lock_file_exists(path)


@pytest.mark.parametrize("held", ["own name", "name given to the old run"])
async def test_a_version_1_journal_reached_through_a_symlink_checks_both_old_locks(
    path: Path, tmp_path: Path, held: str
) -> None:
    # An older release locked "<the name it was given>.lock": this one is opened through a
    # symlink, and the older run may have been given either name.
    _version_1(path)
    link = tmp_path / "link.sqlite"
    link.symlink_to(path)
    name = path if held == "own name" else link
    legacy = os.open(f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(legacy, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for opened in (link, path):
            if held == "name given to the old run" and opened == path:
                continue  # only a run given the link itself can know that lock's name
            with pytest.raises(JournalLockedError, match="an earlier inveterate-async"):
                await Journal(opened).open()
        assert sql(path, "PRAGMA user_version") == [(1,)]
    finally:
        os.close(legacy)


async def test_iter_rows_finds_the_sending_rows_of_a_version_1_journal(path: Path) -> None:
    _version_1(path)
    async with Journal(path, read_only=True) as reader:
        unknown = [row.ref async for row in reader.iter_rows(states=[A.UNKNOWN])]
    assert unknown == ["a"]


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
    with pytest.raises(RuntimeError, match="not open"):
        await journal.report()


# --- commits ---------------------------------------------------------------------------------


async def test_a_failed_commit_fails_every_update_in_it(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal._merge([adjustment("a"), adjustment("b")])

    def disk_error(updates: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(journal._opened(), "transaction", disk_error)
    results = await asyncio.gather(
        journal._record("a", A.PENDING, A.APPLIED),
        journal._record("b", A.PENDING, A.APPLIED),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [JournalError, JournalError]
    assert str(results[0]) == f"journal {journal.path}: disk I/O error"
    monkeypatch.undo()
    assert [row.state for row in await journal.rows()] == [A.PENDING] * 2


async def test_an_update_that_fails_in_sqlite_fails_alone(journal: Journal) -> None:
    await journal._merge([adjustment("a"), adjustment("b"), adjustment("c")])
    assert await journal._record("a", A.PENDING, A.APPLIED, entry_id="e1")
    results = await asyncio.gather(
        journal._record("b", A.PENDING, A.APPLIED, entry_id="e1"),  # claimed by "a"
        journal._record("c", A.PENDING, A.APPLIED, entry_id="e2"),
        return_exceptions=True,
    )
    assert isinstance(results[0], JournalError)
    assert results[1] is True
    assert journal_states(Path(journal.path)) == {"a": "applied", "b": "pending", "c": "applied"}


async def test_an_update_that_breaks_rolls_back_its_whole_commit(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal._merge([adjustment("a")])
    file = journal._opened()

    def broken(*args: object) -> None:
        file.db.execute("UPDATE adjustments SET state = 'applied'")
        raise RuntimeError("a bug")

    monkeypatch.setattr(file, "record", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        await journal._record("a", A.PENDING, A.APPLIED)
    monkeypatch.undo()
    assert (await journal.rows())[0].state is A.PENDING


async def test_updates_queued_together_share_a_commit(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = [f"r{n}" for n in range(200)]
    await journal._merge([adjustment(ref) for ref in refs])
    file = journal._opened()
    real = file.transaction
    sizes: list[int] = []

    def counted(updates: list[Any]) -> list[Any]:
        sizes.append(len(updates))
        return real(updates)

    monkeypatch.setattr(file, "transaction", counted)
    results = await asyncio.gather(*(journal._record(ref, A.PENDING, A.APPLIED) for ref in refs))
    assert results == [True] * 200
    assert sum(sizes) == 200
    assert len(sizes) < 200  # one fsync for many rows
    assert {row.state for row in await journal.rows()} == {A.APPLIED}


async def test_a_commit_cut_short_by_the_loop_cancels_its_waiters(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    await journal._merge([adjustment("a"), adjustment("b")])
    started = threading.Event()
    release = threading.Event()
    real = journal._opened().transaction

    def slow(updates: list[Any]) -> list[Any]:
        started.set()
        release.wait(30)
        return real(updates)

    monkeypatch.setattr(journal._opened(), "transaction", slow)
    first = asyncio.ensure_future(journal._record("a", A.PENDING, A.APPLIED))
    await asyncio.to_thread(started.wait, 30)  # "a" is being committed
    second = asyncio.ensure_future(journal._record("b", A.PENDING, A.APPLIED))
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
        assert [row.state for row in await reader.rows()] == [A.APPLIED, A.PENDING]


async def test_a_commit_cancelled_before_it_started_cancels_its_waiters(
    journal: Journal,
) -> None:
    await journal._merge([adjustment("a")])
    waiter = asyncio.ensure_future(journal._record("a", A.PENDING, A.APPLIED))
    await asyncio.sleep(0)
    assert journal._committer is not None
    journal._committer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_a_cancelled_caller_does_not_withdraw_its_update(journal: Journal) -> None:
    await journal._merge([adjustment("a")])
    waiter = asyncio.ensure_future(journal._record("a", A.PENDING, A.APPLIED))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await journal.close()  # commits what was queued
    assert journal_states(Path(journal.path)) == {"a": "applied"}


async def test_updates_queued_at_any_moment_are_all_committed(journal: Journal) -> None:
    refs = [f"r{n}" for n in range(300)]
    await journal._merge([adjustment(ref) for ref in refs])
    rng = random.Random(3)

    async def update(ref: str, turns: int) -> None:
        for _ in range(turns):  # spread over many commits
            await asyncio.sleep(0)
        assert await journal._record(ref, A.PENDING, A.APPLIED)

    await asyncio.gather(*(update(ref, rng.randrange(50)) for ref in refs))
    assert {row.state for row in await journal.rows()} == {A.APPLIED}


async def test_a_commit_that_ended_drops_nothing_queued_after_it(journal: Journal) -> None:
    await journal._merge([adjustment("a"), adjustment("b")])
    assert await journal._record("a", A.PENDING, A.APPLIED)
    ended = journal._committer
    assert ended is not None
    assert ended.done()
    # "b" is queued after the committer ended, before its done-callback ran: the race a
    # busy loop (HTTP answers arriving) makes likely. The callback must not drop it.
    waiter = asyncio.ensure_future(journal._record("b", A.PENDING, A.APPLIED))
    await asyncio.sleep(0)
    journal._drop_queued(ended)
    assert await waiter is True
    assert journal_states(Path(journal.path)) == {"a": "applied", "b": "applied"}


@pytest.mark.parametrize("expected", [A.PENDING, A.NOT_APPLIED])
async def test_a_mark_whose_post_never_left_is_undone_exactly(
    journal: Journal, path: Path, expected: AdjustmentState
) -> None:
    # A row sent once before (answered 429, or found not applied), marked for a send that
    # is cancelled before its POST leaves: it is put back as it was, counts and all.
    await journal._merge([adjustment("a")])
    await sent(journal, "a", "Gold [ref:a]")
    assert await journal._record("a", A.UNKNOWN, expected, error="RateLimitError: slow down")
    (before,) = await journal._member_stored("42")
    columns = "resent_run, first_sent_at, last_sent_at"
    stored_before = sql(path, f"SELECT {columns} FROM adjustments")
    assert await journal._mark_sent("a", expected, "Gold [ref:a]", 99.0)
    (marked,) = await journal._member_stored("42")
    assert (marked.row.attempts, marked.sent_clock) == (2, 99.0)
    assert await journal._unmark(before)
    (after,) = await journal._member_stored("42")
    assert after == before
    assert sql(path, f"SELECT {columns} FROM adjustments") == stored_before
    assert not await journal._unmark(before)  # not unknown any more: nothing to undo
