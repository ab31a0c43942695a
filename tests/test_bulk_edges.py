"""The edges of a bulk run, in process, against the real Sandbox: each test here is a way
an earlier design applied a credit twice or stranded a batch.

Every test counts the credits in the sandbox's ledger per ref: the ledger is the truth.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from inveterate_async import (
    AdjustmentRow,
    AdjustmentState,
    AuthenticationError,
    CreditAdjustment,
    InveterateClient,
    Journal,
    JournalError,
    JournalLockedError,
    JournalWriteError,
)
from inveterate_async._bulk import journal_open
from inveterate_async._bulk import rows as rows_module
from inveterate_async._bulk.lock import Hold
from inveterate_async._bulk.tags import ref_of, tagged_note
from inveterate_async.testing import RecordedRequest, Sandbox

from .bulk_helpers import journal_states, nonzero, posts, refs_written, world
from .conftest import API_KEY

A = AdjustmentState


def batch(count: int, members: int = 5, *, prefix: str = "g") -> list[CreditAdjustment]:
    """``count`` adjustments of 5.00 over ``members`` members."""
    return [
        CreditAdjustment(ref=f"{prefix}:{n}", customer_id=str(n % members), amount="5.00")
        for n in range(count)
    ]


def members_of(adjustments: list[CreditAdjustment]) -> set[str]:
    return {a.customer_id for a in adjustments}


def once_each(sandbox: Sandbox, adjustments: list[CreditAdjustment]) -> None:
    """Each adjustment's tagged credit is in the ledger exactly once, and nothing else."""
    counts = refs_written(sandbox, members_of(adjustments))
    assert counts == {a.ref: 1 for a in adjustments}


# --- statuses ---------------------------------------------------------------------------------


async def test_an_unreadable_2xx_is_applied_and_never_resent(tmp_path: Path) -> None:
    # Visible only after the settle window, and re-sends allowed: the status alone proves it.
    async with world(visibility_delay=900) as w:
        w.sandbox.fail_next(201, method="POST", apply=True, body="<html>ok</html>")
        rows = batch(1)
        report = await w.client.apply_credits(
            rows, tmp_path / "j.sqlite", settle=60, resend_unconfirmed=True, clock=w.clock
        )
        assert nonzero(report) == {"applied": 1}
        assert len(posts(w.sandbox)) == 1
        w.clock.advance(900)
        once_each(w.sandbox, rows)


@pytest.mark.parametrize("status", [303, 307, 408, 409, 418, 502])
async def test_an_undocumented_answer_after_applying_is_reconciled_not_rejected(
    tmp_path: Path, status: int
) -> None:
    async with world() as w:
        w.sandbox.fail_next(status, method="POST", apply=True)
        rows = batch(3)
        report = await w.client.apply_credits(rows, tmp_path / "j.sqlite", clock=w.clock)
        assert nonzero(report) == {"applied": 3}
        # "Edit and re-run", as the docs advised for a rejected row: nothing to edit.
        again = await w.client.apply_credits(rows, tmp_path / "j.sqlite", clock=w.clock)
        assert nonzero(again) == {"applied": 3}
        assert len(posts(w.sandbox)) == 3
        once_each(w.sandbox, rows)


async def test_a_400_is_rejected_with_the_api_message(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(
            400, method="POST", customer_id="1", body={"message": "bad note", "data": {}}
        )
        report = await w.client.apply_credits(batch(2, 2), tmp_path / "j.sqlite", clock=w.clock)
        assert nonzero(report) == {"applied": 1, "rejected": 1}
        (row,) = report.attention
        assert row.adjustment.customer_id == "1"
        assert "bad note" in (row.error or "")


async def test_a_missing_member_fails_its_rows_and_the_batch_goes_on(tmp_path: Path) -> None:
    clock_rows = batch(6, 3)
    async with (
        Sandbox(api_key=API_KEY, members_exist=lambda member: member != "1") as sandbox,
        InveterateClient(API_KEY, base_url=sandbox.base_url, max_retries=0) as client,
    ):
        report = await client.apply_credits(clock_rows, tmp_path / "j.sqlite")
        assert nonzero(report) == {"applied": 4, "rejected": 2}
        assert {row.adjustment.customer_id for row in report.attention} == {"1"}
        assert all("Customer not found" in (row.error or "") for row in report.attention)
        assert {r.customer_id for r in posts(sandbox)} == {"0", "2"}  # never sent for 1
        # Without the look, the POST's own 404 fails the row the same way.
        report = await client.apply_credits(
            batch(3, 3, prefix="h"), tmp_path / "k.sqlite", check_ledger_first=False
        )
        assert nonzero(report) == {"applied": 2, "rejected": 1}
        (row,) = report.attention
        assert "NotFoundError" in (row.error or "")


async def test_a_key_revoked_mid_batch_stops_and_a_rerun_with_the_right_key_finishes(
    tmp_path: Path,
) -> None:
    async with world() as w:
        seen: list[RecordedRequest] = []
        revoked = [True]

        def after_four(request: RecordedRequest) -> bool:
            seen.append(request)
            return revoked[0] and len(seen) > 4

        w.sandbox.fail_next(401, times=10_000, method="POST", match=after_four)
        rows = batch(10, 10)
        journal = tmp_path / "j.sqlite"
        with pytest.raises(AuthenticationError):
            await w.client.apply_credits(rows, journal, concurrency=2, clock=w.clock)
        async with Journal(journal, read_only=True) as opened:
            states = {row.ref: row.state for row in await opened.rows()}
        assert sum(state is A.APPLIED for state in states.values()) == 4
        assert all(state in (A.APPLIED, A.PENDING) for state in states.values())
        # Stopped at once: at most one refused POST per worker.
        assert len(posts(w.sandbox)) <= 4 + 2
        w.sandbox.reset_stats()
        revoked[0] = False  # the right key again
        report = await w.client.apply_credits(rows, journal, clock=w.clock)
        assert nonzero(report) == {"applied": 10}
        once_each(w.sandbox, rows)


# --- the ledger is the truth ------------------------------------------------------------------


async def test_a_second_journal_applies_nothing_twice(tmp_path: Path) -> None:
    async with world() as w:
        rows = batch(20)
        first = await w.client.apply_credits(rows, tmp_path / "mine.sqlite", clock=w.clock)
        assert nonzero(first) == {"applied": 20}
        before = len(posts(w.sandbox))
        second = await w.client.apply_credits(rows, tmp_path / "colleague.sqlite", clock=w.clock)
        assert nonzero(second) == {"applied": 20}
        assert len(posts(w.sandbox)) == before  # every ref was found in the ledger
        once_each(w.sandbox, rows)
        async with Journal(tmp_path / "colleague.sqlite", read_only=True) as opened:
            assert all(row.entry_id for row in await opened.rows())  # with its entry


async def test_a_lost_journal_after_a_partial_run_sends_only_the_rest(tmp_path: Path) -> None:
    async with world() as w:
        rows = batch(12, 4)
        await w.client.apply_credits(rows[:7], tmp_path / "lost.sqlite", clock=w.clock)
        (tmp_path / "lost.sqlite").unlink()
        report = await w.client.apply_credits(rows, tmp_path / "new.sqlite", clock=w.clock)
        assert nonzero(report) == {"applied": 12}
        assert len(posts(w.sandbox)) == 12
        once_each(w.sandbox, rows)


async def test_two_entries_with_one_tag_need_review_and_are_not_sent(tmp_path: Path) -> None:
    async with world() as w:
        (row,) = batch(1)
        twice = {"amount": "5.00", "note": row.tagged_note()}
        w.sandbox.add_credits(row.customer_id, [twice, twice])
        other = batch(1, prefix="o")[0]
        w.sandbox.add_credits(other.customer_id, [{"amount": "7.00", "note": other.tagged_note()}])
        report = await w.client.apply_credits([row, other], tmp_path / "j.sqlite", clock=w.clock)
        assert nonzero(report) == {"needs_review": 2}
        errors = sorted(r.error or "" for r in report.attention)
        assert errors == [
            "2 ledger entries carry its tag",
            "its tagged entry has amount 7.00, not 5.00",
        ]
        assert posts(w.sandbox) == []


async def test_the_look_can_be_skipped_for_a_known_new_batch(tmp_path: Path) -> None:
    async with world() as w:
        rows = batch(10)
        report = await w.client.apply_credits(
            rows, tmp_path / "j.sqlite", check_ledger_first=False, clock=w.clock
        )
        assert nonzero(report) == {"applied": 10}
        reads = [r for r in w.sandbox.requests if r.method == "GET"]
        assert [r.query.get("limit") for r in reads] == [["1"]]  # only the key check
    with pytest.raises(ValueError, match="needs tag_notes"):
        await InveterateClient(API_KEY).apply_credits(
            rows, tmp_path / "k.sqlite", tag_notes=False, check_ledger_first=True
        )


# --- settle windows ---------------------------------------------------------------------------


async def test_not_applied_needs_two_reads_the_last_after_the_window(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(500, method="POST")  # not applied, answered 500
        report = await w.client.apply_credits(
            batch(1), tmp_path / "j.sqlite", settle=0, clock=w.clock
        )
        assert nonzero(report) == {"not_applied": 1}
        member_reads = [r for r in w.sandbox.requests if r.method == "GET"]
        assert len(member_reads) >= 3  # the look before sending, then two after the 500


async def test_a_row_from_an_earlier_run_gets_a_whole_window_in_this_one(tmp_path: Path) -> None:
    async with world(visibility_delay=100) as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        rows = batch(1)
        journal = tmp_path / "j.sqlite"
        first = await w.client.apply_credits(rows, journal, settle=50, clock=w.clock)
        assert nonzero(first) == {"not_applied": 1}  # the API is slower than settle
        # Next run: resending allowed, and the write becomes visible 60 s into it.
        started = w.clock()
        report = await w.client.apply_credits(
            rows, journal, settle=200, resend_unconfirmed=True, clock=w.clock
        )
        assert w.clock() - started < 200
        assert nonzero(report) == {"applied": 1}
        once_each(w.sandbox, rows)


# --- the journal: one writer, whatever the name -----------------------------------------------


@pytest.mark.parametrize("alias_kind", ["symlink", "dotted"])
async def test_one_lock_whatever_name_reaches_the_journal(tmp_path: Path, alias_kind: str) -> None:
    path = tmp_path / "j.sqlite"
    other = tmp_path / "elsewhere"
    other.mkdir()
    async with Journal(path):
        pass
    if alias_kind == "symlink":
        alias = other / "alias.sqlite"
        alias.symlink_to(path)
    else:
        alias = other / ".." / "j.sqlite"
    async with Journal(path):
        with pytest.raises(JournalLockedError, match="this process"):
            await Journal(alias).open()
    async with Journal(alias):  # released, and taken through the other name
        with pytest.raises(JournalLockedError):
            await Journal(path).open()


async def test_a_journal_with_a_hard_link_is_refused_and_nothing_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    first, second = batch(2, 2)
    async with world() as w:
        await w.client.apply_credits([first], path, clock=w.clock)
        (tmp_path / "other.sqlite").hardlink_to(path)
        for name in (path, tmp_path / "other.sqlite"):
            with pytest.raises(JournalError, match="2 hard links") as raised:
                await w.client.apply_credits([first, second], name, clock=w.clock)
            assert not isinstance(raised.value, JournalLockedError)
            assert len(w.sandbox.requests) == 2  # the first run's read and POST only
            with pytest.raises(JournalError, match="2 hard links"):
                await Journal(name, read_only=True).open()
        assert [r.customer_id for r in posts(w.sandbox)] == [first.customer_id]
        (tmp_path / "other.sqlite").unlink()
        report = await w.client.apply_credits([first, second], path, clock=w.clock)
        assert refs_written(w.sandbox, ["0", "1"]) == {first.ref: 1, second.ref: 1}
    assert report.all_applied


async def test_two_runs_at_once_on_one_journal_apply_each_row_once(tmp_path: Path) -> None:
    async with world() as w:
        rows = batch(40, 8)
        alias = tmp_path / "alias.sqlite"
        alias.symlink_to(tmp_path / "j.sqlite")
        results = await asyncio.gather(
            w.client.apply_credits(rows, tmp_path / "j.sqlite", clock=w.clock),
            w.client.apply_credits(rows, alias, clock=w.clock),
            return_exceptions=True,
        )
        assert sum(isinstance(r, JournalLockedError) for r in results) <= 1
        assert not any(isinstance(r, sqlite3.Error) for r in results)
        once_each(w.sandbox, rows)


def _no_lock(path: str) -> Hold:
    """A stand-in for the file lock: as if two writers got past it (a broken lock)."""
    import os

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    stat = os.fstat(fd)
    os.close(fd)
    return Hold((stat.st_dev, stat.st_ino), None)


async def test_a_writer_that_lost_the_journal_changes_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_open, "lock", _no_lock)
    async with world() as w:
        rows = batch(6)
        older = await Journal(tmp_path / "j.sqlite").open()
        newer = await Journal(tmp_path / "j.sqlite").open()
        try:
            with pytest.raises(JournalLockedError, match="another run"):
                await w.client.apply_credits(rows, older, clock=w.clock)
            assert posts(w.sandbox) == []
            report = await w.client.apply_credits(rows, newer, clock=w.clock)
            assert nonzero(report) == {"applied": 6}
        finally:
            await older.close()
            await newer.close()
        once_each(w.sandbox, rows)


async def test_a_row_changed_under_a_run_while_its_post_is_out_stops_the_run(
    tmp_path: Path,
) -> None:
    # The outcome of a POST is recorded without waiting (the next mark, or the end of the
    # pass, waits for it): a record that finds its row changed stops the run before the
    # next POST.
    path = tmp_path / "j.sqlite"
    rows = batch(12, 1)

    def meddle(request: RecordedRequest) -> bool:
        if request.json()["note"] == tagged_note(None, rows[0].ref):
            other = sqlite3.connect(path)
            with other:
                other.execute("UPDATE adjustments SET state = 'rejected' WHERE ref = 'g:0'")
            other.close()
        return False  # observes only: the sandbox applies it

    async with world() as w:
        w.sandbox.fail_next(method="POST", times=100, match=meddle)
        with pytest.raises(JournalWriteError, match="'g:0' was changed by another writer") as e:
            await w.client.apply_credits(rows, path, clock=w.clock, concurrency=1)
        assert isinstance(e.value.__cause__, JournalLockedError)
        sent = len(posts(w.sandbox))
    states = journal_states(path)
    assert states["g:0"] == "rejected"  # the other writer's change stands
    # The failed record was committed with the next row's mark: that row is put back, unsent.
    assert sent == 1
    assert list(states.values()).count("pending") == len(rows) - 1


async def test_every_state_change_is_compare_and_set(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite") as journal:
        await journal._merge(batch(1))
        assert await journal._mark_sent("g:0", A.PENDING, "[ref:g:0]", 1.0)
        # A second mark from pending fails: the row is no longer pending.
        assert not await journal._mark_sent("g:0", A.PENDING, "[ref:g:0]", 2.0)
        assert not await journal._record("g:0", A.PENDING, A.APPLIED)
        assert await journal._record("g:0", A.UNKNOWN, A.APPLIED, entry_id="e1")
        (row,) = await journal.rows()
        assert (row.state, row.attempts, row.entry_id) == (A.APPLIED, 1, "e1")


# --- cancellation, closing --------------------------------------------------------------------


async def _slow_run(
    tmp_path: Path,
    sandbox: Sandbox,
    client: InveterateClient,
    slow: list[bool],
    posted: asyncio.Event | None = None,
) -> None:
    """A run whose POSTs are applied, then answered 0.3 s later while ``slow[0]``."""

    def match(_: RecordedRequest) -> bool:
        if posted is not None:
            posted.set()
        return slow[0]

    sandbox.fail_next(201, method="POST", apply=True, delay=0.3, times=100, match=match)
    await client.apply_credits(batch(20), tmp_path / "j.sqlite")


@pytest.fixture
def asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """Errors asyncio logs (e.g. "Future exception was never retrieved")."""
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        yield caplog.records


async def test_a_cancellation_during_cleanup_still_releases_the_journal(
    tmp_path: Path, asyncio_errors: list[logging.LogRecord]
) -> None:
    async with (
        Sandbox(api_key=API_KEY) as sandbox,
        InveterateClient(API_KEY, base_url=sandbox.base_url, max_retries=0) as client,
    ):
        slow = [True]
        posted = asyncio.Event()
        task = asyncio.ensure_future(_slow_run(tmp_path, sandbox, client, slow, posted))
        await posted.wait()
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()  # a second cancellation, landing in the cleanup
        with pytest.raises(asyncio.CancelledError):
            await task
        async with Journal(tmp_path / "j.sqlite"):  # the lock was released
            pass
        slow[0] = False
        report = await client.apply_credits(batch(20), tmp_path / "j.sqlite")
        assert nonzero(report) == {"applied": 20}
        once_each(sandbox, batch(20))
    assert [r.getMessage() for r in asyncio_errors] == []


async def test_an_anyio_deadline_during_a_run_closes_the_journal(tmp_path: Path) -> None:
    async with (
        Sandbox(api_key=API_KEY) as sandbox,
        InveterateClient(API_KEY, base_url=sandbox.base_url, max_retries=0) as client,
    ):
        slow = [True]
        with anyio.move_on_after(0.2) as scope:  # cancels again at every checkpoint
            await _slow_run(tmp_path, sandbox, client, slow)
        assert scope.cancelled_caught
        async with Journal(tmp_path / "j.sqlite") as journal:  # released in this process
            states = {row.state for row in await journal.rows()}
        assert states <= {A.PENDING, A.UNKNOWN, A.APPLIED}
        slow[0] = False
        report = await client.apply_credits(batch(20), tmp_path / "j.sqlite")
        assert nonzero(report) == {"applied": 20}
        once_each(sandbox, batch(20))


# --- tags, refs, amounts ----------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["a] [ref:b", "a b", "x[1]", "tab\there", "new\nline", "a\u2003b"])
def test_refs_that_could_collide_in_a_tag_are_refused(ref: str) -> None:
    with pytest.raises(ValueError, match="ref must not"):
        CreditAdjustment(ref=ref, customer_id="1", amount="1")


@pytest.mark.parametrize(
    ("note", "ref"),
    [
        ("gift [ref:a] [ref:b]", "b"),
        ("[ref:a]", "a"),
        ("a note", None),
        ("x[ref:a]", None),
        ("[ref:a] later", None),
        (None, None),
    ],
)
def test_a_note_names_at_most_one_ref(note: str | None, ref: str | None) -> None:
    assert ref_of(note) == ref


def test_a_tagged_note_splits_back_into_its_note_and_ref() -> None:
    for note in (None, "", "Gold", "Gold [ref:other]", "ends with space "):
        assert ref_of(tagged_note(note, "r:1")) == "r:1"


async def test_amounts_with_too_many_places_are_refused_before_anything(tmp_path: Path) -> None:
    async with world() as w:
        rows = [*batch(3), CreditAdjustment(ref="typo", customer_id="1", amount="5.005")]
        with pytest.raises(ValueError, match="more than 2 decimal places"):
            await w.client.apply_credits(rows, tmp_path / "j.sqlite", max_decimal_places=2)
        assert w.sandbox.requests == []
        async with Journal(tmp_path / "j.sqlite", read_only=True) as journal:
            assert await journal.rows() == []  # the merge was undone
        report = await w.client.apply_credits(rows, tmp_path / "j.sqlite", clock=w.clock)
        assert nonzero(report) == {"applied": 4}  # opted out: any places


async def test_a_ref_given_twice_undoes_the_whole_merge(tmp_path: Path) -> None:
    async with world() as w:
        rows = [*batch(1200), batch(1)[0]]  # the duplicate is in the third chunk
        with pytest.raises(ValueError, match="'g:0' is given twice"):
            await w.client.apply_credits(rows, tmp_path / "j.sqlite")
        async with Journal(tmp_path / "j.sqlite", read_only=True) as journal:
            assert await journal.rows() == []
        assert w.sandbox.requests == []


# --- streaming --------------------------------------------------------------------------------


async def test_a_generator_batch_is_read_once_and_each_row_built_at_most_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = 0
    real = rows_module.to_row

    def counting(record: sqlite3.Row) -> AdjustmentRow:
        nonlocal built
        built += 1
        return real(record)

    monkeypatch.setattr("inveterate_async._bulk.journal_file.to_row", counting)
    monkeypatch.setattr("inveterate_async._bulk.merge.to_row", counting)
    async with world() as w:
        generated = (
            CreditAdjustment(ref=f"s:{n}", customer_id=str(n % 50), amount="1.00")
            for n in range(2000)
        )
        report = await w.client.apply_credits(generated, tmp_path / "j.sqlite", clock=w.clock)
        assert nonzero(report) == {"applied": 2000}
        assert built <= 2000  # a clean run builds each row once
        built = 0
        again = (
            CreditAdjustment(ref=f"s:{n}", customer_id=str(n % 50), amount="1.00")
            for n in range(2000)
        )
        report = await w.client.apply_credits(again, tmp_path / "j.sqlite", clock=w.clock)
        assert nonzero(report) == {"applied": 2000}
        assert built <= 2 * 2000
        assert len(posts(w.sandbox)) == 2000


async def test_a_dry_run_reports_without_writing_and_lists_what_it_would_send(
    tmp_path: Path,
) -> None:
    async with world() as w:
        rows = batch(5)
        await w.client.apply_credits(rows[:2], tmp_path / "j.sqlite", clock=w.clock)
        seen: list[Any] = []
        report = await w.client.apply_credits(
            rows, tmp_path / "j.sqlite", dry_run=True, on_progress=seen.append
        )
        assert report.dry_run
        assert report.to_send_total == 3
        assert [row.ref for row in seen] == ["g:2", "g:3", "g:4"]
        assert nonzero(report) == {"applied": 2, "pending": 3}
        assert len(posts(w.sandbox)) == 2
        with pytest.raises(ValueError, match="given twice"):
            await w.client.apply_credits([*rows, rows[0]], tmp_path / "j.sqlite", dry_run=True)
        total = sum((a.amount for a in rows), Decimal(0))
        assert report.sums[A.APPLIED] + report.sums[A.PENDING] == total
