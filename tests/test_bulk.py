"""apply_credits end to end against the Sandbox: outcomes, the ledger read first, resume,
settle windows, review, dry runs, interruption, and its arguments."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from inveterate_async import (
    AdjustmentReport,
    AdjustmentRow,
    AdjustmentState,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CreditAdjustment,
    CreditResult,
    InvalidResponseError,
    InveterateClient,
    Journal,
    JournalConflictError,
    JournalError,
    JournalLockedError,
    JournalWriteError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from inveterate_async._bulk.journal_file import JournalFile
from inveterate_async._bulk.sending import echoed_entry_id, outcome
from inveterate_async.testing import RecordedRequest, Sandbox

from .bulk_helpers import (
    api_entries,
    bump_holder_run,
    journal_states,
    key_checks,
    ledger_reads,
    make_v1_journal,
    nonzero,
    posts,
    reads_after_first_post,
    world,
    written,
)

A = AdjustmentState


def gold(
    n: int, amount: str = "5.00", member: str | None = None, **kwargs: Any
) -> CreditAdjustment:
    return CreditAdjustment(f"gold:{n}", member or str(n), amount, note="Gold bonus", **kwargs)


def tagged(n: int, amount: str = "5.00") -> tuple[str, Decimal, str]:
    """How written() counts gold(n) sent with its tag."""
    return (str(n), Decimal(amount).normalize(), f"Gold bonus [ref:gold:{n}]")


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


async def stored_rows(path: Path) -> list[AdjustmentRow]:
    async with Journal(path, read_only=True) as journal:
        return await journal.rows()


def after_the_first_post(sandbox: Sandbox) -> Callable[[RecordedRequest], bool]:
    """A fault's ``match`` for the requests that arrive once a write has."""
    return lambda request: bool(posts(sandbox))


# --- outcomes of a send ---------------------------------------------------------------------


async def test_a_clean_run_applies_every_row_once_and_reports_progress(tmp_path: Path) -> None:
    batch = [gold(1), gold(2, "-2.50", force=True), gold(3, "0.10")]
    seen: list[tuple[str, AdjustmentState]] = []
    async with world() as w:
        report = await w.client.apply_credits(
            batch,
            tmp_path / "j.sqlite",
            clock=w.clock,
            on_progress=lambda row: seen.append((row.ref, row.state)),
        )
        assert [r.json() for r in posts(w.sandbox)] == [
            {"amount": Decimal("5.00"), "note": "Gold bonus [ref:gold:1]"},
            {"amount": Decimal("-2.50"), "note": "Gold bonus [ref:gold:2]", "force": True},
            {"amount": Decimal("0.10"), "note": "Gold bonus [ref:gold:3]"},
        ]
        # Each member's ledger is read once, before its first send; it is the key check.
        requests = w.sandbox.requests
        for member in ("1", "2", "3"):
            mine = [r.method for r in requests if r.customer_id == member]
            assert mine == ["GET", "POST"]
        assert key_checks(w.sandbox) == []
        entries = api_entries(w.sandbox, ["1", "2", "3"])
    assert report.all_applied
    assert report.sums[A.APPLIED] == Decimal("2.60")
    assert report.attention == ()
    # Marked unknown (durably) before each POST left, applied once it was answered.
    assert Counter(state for _, state in seen) == {A.UNKNOWN: 3, A.APPLIED: 3}
    for ref in ("gold:1", "gold:2", "gold:3"):
        assert seen.index((ref, A.UNKNOWN)) < seen.index((ref, A.APPLIED))
    rows = await stored_rows(tmp_path / "j.sqlite")
    # The 201 echoed the new entry: its id is claimed, and the send is recorded.
    assert [row.entry_id for row in rows] == [entry["id"] for entry in entries]
    assert [row.sent_note for row in rows] == [f"Gold bonus [ref:gold:{n}]" for n in (1, 2, 3)]
    assert all(row.attempts == 1 and row.first_sent_at == row.last_sent_at for row in rows)
    assert all(row.first_sent_at is not None and row.first_sent_at.tzinfo for row in rows)


async def test_a_member_with_many_rows_has_its_ledger_read_once(tmp_path: Path) -> None:
    batch = [gold(n, member="7") for n in range(300)] + [gold(300, member="8")]
    async with world() as w:
        report = await w.client.apply_credits(batch, tmp_path / "j.sqlite", clock=w.clock)
        assert len(ledger_reads(w.sandbox, "7")) == 1
        assert len(ledger_reads(w.sandbox, "8")) == 1
        assert written(w.sandbox, ["7", "8"]) == Counter(
            {("7", Decimal(5), f"Gold bonus [ref:gold:{n}]"): 1 for n in range(300)}
            | {("8", Decimal(5), "Gold bonus [ref:gold:300]"): 1}
        )
    assert report.all_applied


async def test_without_tags_the_key_is_checked_once_and_no_ledger_is_read(tmp_path: Path) -> None:
    async with world() as w:
        report = await w.client.apply_credits(
            [gold(1), gold(2)], tmp_path / "j.sqlite", clock=w.clock, tag_notes=False
        )
        assert [r.method for r in w.sandbox.requests] == ["GET", "POST", "POST"]
        assert len(key_checks(w.sandbox)) == 1
        assert [r.json()["note"] for r in posts(w.sandbox)] == ["Gold bonus", "Gold bonus"]
    assert report.all_applied


async def test_check_ledger_first_false_sends_tagged_notes_after_one_key_check(
    tmp_path: Path,
) -> None:
    async with world() as w:
        # Its tag is in the ledger already, but nobody looks: it is sent (the caller's call).
        w.sandbox.add_credits("1", [{"amount": "5.00", "note": "Gold bonus [ref:gold:1]"}])
        report = await w.client.apply_credits(
            [gold(1), gold(2)], tmp_path / "j.sqlite", clock=w.clock, check_ledger_first=False
        )
        assert [r.method for r in w.sandbox.requests] == ["GET", "POST", "POST"]
        assert len(key_checks(w.sandbox)) == 1
        assert [r.json()["note"] for r in posts(w.sandbox)] == [
            "Gold bonus [ref:gold:1]",
            "Gold bonus [ref:gold:2]",
        ]
    assert report.all_applied


async def test_a_rerun_skips_applied_and_rejected_rows(tmp_path: Path) -> None:
    batch = [gold(1), gold(2), gold(3)]
    async with world() as w:
        w.sandbox.fail_next(400, method="POST", customer_id="2", body={"message": "No member"})
        first = await w.client.apply_credits(batch, tmp_path / "j.sqlite", clock=w.clock)
        w.sandbox.reset_stats()
        second = await w.client.apply_credits(batch, tmp_path / "j.sqlite", clock=w.clock)
        assert w.sandbox.requests == []  # nothing left to send, nothing uncertain to look up
    assert first.counts == second.counts
    assert (first.counts[A.APPLIED], first.counts[A.REJECTED]) == (2, 1)
    (rejected,) = second.attention
    assert rejected.ref == "gold:2"
    assert rejected.error is not None
    assert rejected.error.startswith("BadRequestError: HTTP 400 from POST")
    assert rejected.error.endswith(": No member")


async def test_an_edited_rejected_row_is_sent_again(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(400, method="POST")
        await w.client.apply_credits([gold(1, "5.00")], tmp_path / "j.sqlite", clock=w.clock)
        report = await w.client.apply_credits(
            [gold(1, "6.00")], tmp_path / "j.sqlite", clock=w.clock
        )
        assert [r.json()["amount"] for r in posts(w.sandbox)] == [Decimal("5.00"), Decimal("6.00")]
        assert written(w.sandbox, ["1"]) == {tagged(1, "6.00"): 1}
    assert report.all_applied


async def test_an_edit_of_a_row_that_may_have_been_applied_is_refused(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", clock=w.clock, settle=0)
        w.sandbox.reset_stats()
        with pytest.raises(JournalConflictError, match=r"gold:1 \(applied: amount"):
            await w.client.apply_credits([gold(1, "6")], tmp_path / "j.sqlite", clock=w.clock)
        assert w.sandbox.requests == []  # refused before anything was sent
    assert journal_states(tmp_path / "j.sqlite") == {"gold:1": "applied"}


async def test_rate_limited_rows_stay_pending_for_the_next_run(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(429, method="POST", customer_id="2", retry_after=0)
        report = await w.client.apply_credits(
            [gold(1), gold(2)], tmp_path / "j.sqlite", clock=w.clock
        )
        assert report.counts[A.PENDING] == 1
        (pending,) = report.attention
        assert pending.error is not None
        assert pending.error.startswith("RateLimitError: HTTP 429")
        report = await w.client.apply_credits(
            [gold(1), gold(2)], tmp_path / "j.sqlite", clock=w.clock
        )
        assert len(posts(w.sandbox)) == 3
        assert written(w.sandbox, ["1", "2"]) == {tagged(1): 1, tagged(2): 1}
    assert report.all_applied


@pytest.mark.parametrize("check_ledger_first", [True, False])
async def test_a_missing_member_is_rejected_with_the_apis_message(
    tmp_path: Path, check_ledger_first: bool
) -> None:
    async with world() as w:
        w.sandbox.members_exist = lambda member: member != "2"
        report = await w.client.apply_credits(
            [gold(1), gold(2), gold(3)],
            tmp_path / "j.sqlite",
            clock=w.clock,
            check_ledger_first=check_ledger_first,
        )
        sent_to = [r.customer_id for r in posts(w.sandbox)]
    assert nonzero(report) == {"applied": 2, "rejected": 1}
    (row,) = report.attention
    assert (row.ref, row.state) == ("gold:2", A.REJECTED)
    assert row.error is not None
    assert row.error.endswith(": Customer not found")
    if check_ledger_first:  # its ledger look said so: nothing was sent for it
        assert sent_to == ["1", "3"]
        assert row.error.startswith("could not read the ledger: NotFoundError: HTTP 404 from GET")
        assert row.attempts == 0
    else:
        assert sent_to == ["1", "2", "3"]
        assert row.error.startswith("NotFoundError: HTTP 404 from POST")


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, None, AuthenticationError),
        (403, None, PermissionDeniedError),
        (400, {"message": "Invalid API key", "data": {}}, BadRequestError),
    ],
)
async def test_a_refused_key_stops_the_run_and_a_rerun_finishes(
    tmp_path: Path, status: int, body: Any, error: type[Exception]
) -> None:
    batch = [gold(1), gold(2), gold(3), gold(4)]
    path = tmp_path / "j.sqlite"
    async with world() as w:
        w.sandbox.fail_next(status, method="POST", customer_id="2", body=body)
        with pytest.raises(error):
            await w.client.apply_credits(batch, path, clock=w.clock, concurrency=1)
        assert [r.customer_id for r in posts(w.sandbox)] == ["1", "2"]  # then no more
        assert journal_states(path) == {
            "gold:1": "applied",
            "gold:2": "pending",  # the key was refused: nothing was done
            "gold:3": "pending",
            "gold:4": "pending",
        }
        refused = (await stored_rows(path))[1]
        assert refused.error is not None
        assert refused.error.startswith(f"{error.__name__}: HTTP {status}")
        report = await w.client.apply_credits(batch, path, clock=w.clock, concurrency=1)
        assert [r.customer_id for r in posts(w.sandbox)] == ["1", "2", "2", "3", "4"]
        assert written(w.sandbox, ["1", "2", "3", "4"]) == {tagged(n): 1 for n in (1, 2, 3, 4)}
    assert report.all_applied


@pytest.mark.parametrize("tag_notes", [True, False])
async def test_a_2xx_with_an_unreadable_body_is_applied_and_its_entry_found(
    tmp_path: Path, tag_notes: bool
) -> None:
    async with world() as w:
        w.sandbox.fail_next(201, method="POST", apply=True, body="<html>Created</html>")
        report = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", clock=w.clock, tag_notes=tag_notes, settle=60
        )
        assert len(posts(w.sandbox)) == 1
        (entry,) = api_entries(w.sandbox, ["1"])
    assert report.all_applied
    (row,) = await stored_rows(tmp_path / "j.sqlite")
    assert row.state is A.APPLIED
    # Looked up afterwards by its tag; without one, which look-alike is its own is unknown.
    assert row.entry_id == (entry["id"] if tag_notes else None)
    assert row.error is not None
    assert row.error.startswith("InvalidResponseError")


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503},
        {"status": 409},
        {"status": 408},
        {"status": 422},
        {"status": 302},
        {"status": 201, "disconnect": True},
    ],
    ids=lambda fault: "dropped" if fault.get("disconnect") else str(fault["status"]),
)
@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not-applied"])
async def test_an_uncertain_answer_is_decided_by_the_ledger(
    tmp_path: Path, fault: dict[str, Any], applied: bool
) -> None:
    async with world() as w:
        w.sandbox.fail_next(method="POST", apply=applied, **fault)
        report = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", clock=w.clock, settle=60
        )
        assert len(posts(w.sandbox)) == 1  # never re-sent without resend_unconfirmed
        entries = api_entries(w.sandbox, ["1"])
    assert len(entries) == int(applied)
    (row,) = await stored_rows(tmp_path / "j.sqlite")
    assert row.state is (A.APPLIED if applied else A.NOT_APPLIED)
    assert row.entry_id == (entries[0]["id"] if applied else None)
    assert report.counts[row.state] == 1


async def test_a_timed_out_send_is_decided_by_the_ledger(tmp_path: Path) -> None:
    async with world(timeout=1.0) as w:
        # Applied on arrival, answered long after the client gave up.
        w.sandbox.fail_next(201, method="POST", apply=True, delay=30)
        report = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", clock=w.clock, settle=60
        )
        assert len(posts(w.sandbox)) == 1
        (entry,) = api_entries(w.sandbox, ["1"])
    assert report.all_applied
    (row,) = await stored_rows(tmp_path / "j.sqlite")
    assert row.entry_id == entry["id"]
    assert row.error is not None
    assert row.error.startswith("APITimeoutError")


# --- settle windows and reconciliation ----------------------------------------------------


async def test_unknown_outcome_found_in_the_ledger_is_applied_not_resent(tmp_path: Path) -> None:
    async with world(visibility_delay=90) as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        started = w.clock()
        report = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", clock=w.clock, settle=300, resend_unconfirmed=True
        )
        assert len(posts(w.sandbox)) == 1
        (entry,) = api_entries(w.sandbox, ["1"])
        waited = w.clock() - started
    assert report.all_applied
    (row,) = await stored_rows(tmp_path / "j.sqlite")
    assert row.entry_id == entry["id"]
    assert row.error is not None
    assert "ServerError: HTTP 500" in row.error  # the last error is kept as history
    assert 90 <= waited < 300  # it looked until the entry showed, not for the whole window


@pytest.mark.parametrize(
    ("settle", "poll_interval", "reads", "waited"),
    [
        (100, 30, 5, 120),  # reads at 0, 30, 60, 90 and 120: the first one after the window
        (90, 30, 4, 90),  # a read started when the window ends counts
        (0, 5, 2, 5),  # no window: still two reads
    ],
)
async def test_not_applied_takes_two_reads_the_last_after_the_window(
    tmp_path: Path, settle: float, poll_interval: float, reads: int, waited: float
) -> None:
    async with world() as w:
        w.sandbox.fail_next(500, method="POST")
        seen: list[tuple[AdjustmentState, float]] = []
        started = w.clock()
        report = await w.client.apply_credits(
            [gold(1)],
            tmp_path / "j.sqlite",
            clock=w.clock,
            settle=settle,
            poll_interval=poll_interval,
            on_progress=lambda row: seen.append((row.state, w.clock() - started)),
        )
        assert reads_after_first_post(w.sandbox) == reads
    assert nonzero(report) == {"not_applied": 1}
    # Unknown when marked and when answered 500, not applied once the window is over.
    assert seen == [(A.UNKNOWN, 0), (A.UNKNOWN, 0), (A.NOT_APPLIED, waited)]


async def test_a_rerun_waits_a_full_settle_for_an_unknown_row_sent_earlier(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    async with world() as w:
        async with Journal(path) as journal:  # as a run killed mid-send leaves it
            await journal._merge([gold(1)])
            assert await journal._mark_sent("gold:1", A.PENDING, "Gold bonus [ref:gold:1]", 0.0)
        w.clock.advance(100_000)  # long ago: its window is counted again all the same
        started = w.clock()
        report = await w.client.apply_credits(
            [gold(1)], path, clock=w.clock, settle=60, poll_interval=10
        )
        waited = w.clock() - started
        # One look in the send pass, then reads at 0, 10, ..., 60 in the reconciling pass.
        assert len(ledger_reads(w.sandbox)) == 1 + 7
        assert posts(w.sandbox) == []
    assert waited == 60
    assert nonzero(report) == {"not_applied": 1}


async def test_not_applied_after_the_window_is_resent_only_when_allowed(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(500, method="POST")  # before applying
        report = await w.client.apply_credits(
            [gold(1), gold(2)], tmp_path / "j.sqlite", clock=w.clock, settle=120
        )
        assert report.counts[A.NOT_APPLIED] == 1
        assert written(w.sandbox, ["1", "2"]) == {tagged(2): 1}
        report = await w.client.apply_credits(
            [gold(1), gold(2)],
            tmp_path / "j.sqlite",
            clock=w.clock,
            settle=120,
            resend_unconfirmed=True,
        )
        assert written(w.sandbox, ["1", "2"]) == {tagged(1): 1, tagged(2): 1}
    assert report.all_applied
    row = (await stored_rows(tmp_path / "j.sqlite"))[0]
    assert (row.ref, row.attempts, row.resends) == ("gold:1", 2, 1)
    assert row.sent_note == "Gold bonus [ref:gold:1]"  # re-sent with the note it was sent with


async def test_a_row_found_not_applied_earlier_gets_a_fresh_window_before_a_resend(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    options: dict[str, Any] = {"settle": 60, "poll_interval": 10}
    async with world() as w:
        w.sandbox.fail_next(500, method="POST")
        report = await w.client.apply_credits([gold(1)], path, clock=w.clock, **options)
        assert nonzero(report) == {"not_applied": 1}
        w.clock.advance(100_000)
        w.sandbox.reset_stats()
        started = w.clock()
        resent_at: list[float] = []
        report = await w.client.apply_credits(
            [gold(1)],
            path,
            clock=w.clock,
            resend_unconfirmed=True,
            on_progress=lambda row: resent_at.append(w.clock() - started),
            **options,
        )
        # The look, then reads at 0, 10, ..., 60; the re-send; one read after it.
        assert [r.method for r in w.sandbox.requests] == ["GET"] * 8 + ["POST", "GET"]
        assert written(w.sandbox, ["1"]) == {tagged(1): 1}
    assert resent_at == [60, 60]  # marked unknown, then applied
    assert report.all_applied


async def test_a_write_shown_after_the_settle_window_is_the_documented_limit(
    tmp_path: Path,
) -> None:
    """The guarantee rests on writes showing within the settle window. Here one shows
    later: it is found not applied and re-sent (as allowed), so applied twice."""
    async with world(visibility_delay=600) as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        report = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", clock=w.clock, settle=300, resend_unconfirmed=True
        )
        assert report.all_applied  # the re-send was answered 201
        assert len(api_entries(w.sandbox, ["1"])) == 2  # applied twice: the limit
    (row,) = await stored_rows(tmp_path / "j.sqlite")
    assert (row.attempts, row.resends) == (2, 1)


@pytest.mark.parametrize("tag_notes", [True, False])
async def test_a_late_first_write_of_a_resent_row_is_flagged_by_a_later_run(
    tmp_path: Path, tag_notes: bool
) -> None:
    async with world(visibility_delay=600) as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        options: dict[str, Any] = {
            "clock": w.clock,
            "settle": 300,
            "resend_unconfirmed": True,
            "tag_notes": tag_notes,
        }
        await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **options)
        entries = api_entries(w.sandbox, ["1"])
        assert len(entries) == 2
        w.clock.advance(1000)  # both writes are visible now
        report = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **options)
        assert len(posts(w.sandbox)) == 2
    assert nonzero(report) == {"needs_review": 1}
    (row,) = report.attention
    assert row.error is not None
    assert "applied twice" in row.error
    assert sorted(c.entry_id for c in row.candidates) == [e["id"] for e in entries]


async def test_a_resent_row_applied_once_is_not_flagged_by_a_later_look_alike(
    tmp_path: Path,
) -> None:
    # Untagged, a re-sent row is looked at again by later runs (a late first write would
    # show): a credit of the same amount and note made later by someone else is not one.
    path = tmp_path / "j.sqlite"
    async with world() as w:
        options: dict[str, Any] = {"clock": w.clock, "settle": 300, "tag_notes": False}
        options["resend_unconfirmed"] = True
        w.sandbox.fail_next(500, method="POST")  # the first POST did nothing
        first = await w.client.apply_credits([gold(1)], path, **options)
        assert first.all_applied  # by the re-send
        w.clock.advance(86_400)
        await w.client.create_credit("1", Decimal(5), note="Gold bonus")  # someone else
        second = await w.client.apply_credits([gold(2)], path, **options)
        assert len(api_entries(w.sandbox, ["1"])) == 2
    assert second.all_applied
    (row, _) = await stored_rows(path)
    assert (row.state, row.resends) == (A.APPLIED, 1)


async def test_a_late_first_write_seen_after_a_resend_needs_review(tmp_path: Path) -> None:
    async with world(visibility_delay=400) as w:
        w.sandbox.fail_next(500, method="POST", apply=True)

        def time_passes(row: AdjustmentRow) -> None:
            if row.state is A.NOT_APPLIED:
                w.clock.advance(200)  # the first write shows before the re-send is checked

        report = await w.client.apply_credits(
            [gold(1)],
            tmp_path / "j.sqlite",
            clock=w.clock,
            settle=300,
            resend_unconfirmed=True,
            on_progress=time_passes,
        )
        first, _ = api_entries(w.sandbox, ["1"])
    (row,) = await stored_rows(tmp_path / "j.sqlite")
    assert row.entry_id != first["id"]  # the re-send's 201 named its own entry
    assert row.state is A.NEEDS_REVIEW
    assert not report.all_applied


async def test_a_resend_that_never_reached_the_api_stays_not_applied(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with world(visibility_delay=600) as w:
        w.sandbox.fail_next(500, method="POST", apply=True)  # applied, shown after the window
        w.sandbox.fail_next(429, method="POST")  # the re-send is refused: nothing done
        options: dict[str, Any] = {"clock": w.clock, "settle": 300, "tag_notes": False}
        report = await w.client.apply_credits([gold(1)], path, resend_unconfirmed=True, **options)
        assert nonzero(report) == {"not_applied": 1}
        w.clock.advance(600)  # the first write shows
        report = await w.client.apply_credits([gold(1)], path, **options)
        assert len(api_entries(w.sandbox, ["1"])) == 1
    assert report.all_applied  # found in the ledger, late


async def test_a_late_write_is_found_before_a_resend(tmp_path: Path) -> None:
    async with world(visibility_delay=600) as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        options: dict[str, Any] = {"clock": w.clock, "settle": 300}
        report = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **options)
        assert report.counts[A.NOT_APPLIED] == 1  # not re-sent: not allowed
        w.clock.advance(600)
        report = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", resend_unconfirmed=True, **options
        )
        assert len(posts(w.sandbox)) == 1
        (entry,) = api_entries(w.sandbox, ["1"])
    # Checked again before anything is re-sent: it was applied after all.
    assert report.all_applied
    (row,) = await stored_rows(tmp_path / "j.sqlite")
    assert row.entry_id == entry["id"]


async def test_a_row_sent_untagged_is_found_by_a_tagged_rerun(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    arrived = asyncio.Event()

    def hang(request: RecordedRequest) -> bool:
        arrived.set()
        return True

    async with world() as w:
        # A run without tags: its POST is applied, then the run is stopped before the answer.
        w.sandbox.fail_next(201, method="POST", apply=True, delay=60, match=hang)
        task = asyncio.ensure_future(
            w.client.apply_credits([gold(1)], path, clock=w.clock, tag_notes=False)
        )
        await asyncio.wait_for(arrived.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert journal_states(path) == {"gold:1": "unknown"}
        report = await w.client.apply_credits(
            [gold(1)], path, clock=w.clock, settle=60, resend_unconfirmed=True
        )
        assert written(w.sandbox, ["1"]) == {("1", Decimal(5), "Gold bonus"): 1}
    assert report.all_applied


# --- what the ledger says before a send ---------------------------------------------------


async def test_a_ref_already_in_the_ledger_is_recorded_applied_not_sent(tmp_path: Path) -> None:
    async with world() as w:
        (seen,) = w.sandbox.add_credits(
            "1", [{"amount": "5.0", "note": "Gold bonus [ref:gold:1]", "reason": "api"}]
        )
        progress: list[tuple[str, AdjustmentState]] = []
        report = await w.client.apply_credits(
            [gold(1), gold(2)],
            tmp_path / "j.sqlite",
            clock=w.clock,
            on_progress=lambda row: progress.append((row.ref, row.state)),
        )
        assert [r.customer_id for r in posts(w.sandbox)] == ["2"]
    assert report.all_applied
    assert ("gold:1", A.UNKNOWN) not in progress
    assert ("gold:1", A.APPLIED) in progress
    row = (await stored_rows(tmp_path / "j.sqlite"))[0]
    assert (row.ref, row.entry_id, row.attempts) == ("gold:1", seen["id"], 0)


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        (["5.00", "5.00"], "2 ledger entries carry its tag"),
        (["4.00"], "its tagged entry has amount 4.00, not 5.00"),
    ],
)
async def test_a_ledger_contradicting_the_journal_needs_review_and_nothing_is_sent(
    tmp_path: Path, entries: list[str], error: str
) -> None:
    path = tmp_path / "j.sqlite"
    async with world() as w:
        seeded = w.sandbox.add_credits(
            "1", [{"amount": amount, "note": "[ref:gold:1]"} for amount in entries]
        )
        report = await w.client.apply_credits([gold(1), gold(2)], path, clock=w.clock)
        again = await w.client.apply_credits(
            [gold(1), gold(2)], path, clock=w.clock, resend_unconfirmed=True
        )
        assert [r.customer_id for r in posts(w.sandbox)] == ["2"]  # never guessed, never sent
    (row,) = report.attention
    assert (row.ref, row.state, row.error) == ("gold:1", A.NEEDS_REVIEW, error)
    assert [c.entry_id for c in row.candidates] == [e["id"] for e in seeded]
    assert [c.amount for c in row.candidates] == [Decimal(a) for a in entries]
    assert again.counts[A.NEEDS_REVIEW] == 1


async def test_look_alikes_make_an_untagged_row_need_review_with_the_evidence(
    tmp_path: Path,
) -> None:
    async with world() as w:
        stamp = iso(w.clock() - 30)  # within the clock-skew allowance of the send
        w.sandbox.add_credits("1", [{"amount": "5.00", "note": "Gold bonus", "createdAt": stamp}])
        w.sandbox.fail_next(500, method="POST", apply=True)
        options: dict[str, Any] = {"clock": w.clock, "resend_unconfirmed": True, "tag_notes": False}
        report = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **options)
        (row,) = report.attention
        assert row.state is A.NEEDS_REVIEW
        assert sorted(c.entry_id for c in row.candidates) == [
            e["id"] for e in w.sandbox.ledger("1")
        ]
        assert all(c.amount == Decimal("5.00") for c in row.candidates)
        w.sandbox.reset_stats()
        again = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **options)
        assert posts(w.sandbox) == []  # never guessed, never re-sent
    assert again.counts[A.NEEDS_REVIEW] == 1


async def test_notes_carry_the_ref_tag_unless_tag_notes_is_off(tmp_path: Path) -> None:
    batch = [gold(1), CreditAdjustment("plain:2", "2", "1.00")]
    async with world() as w:
        await w.client.apply_credits(batch, tmp_path / "a.sqlite", clock=w.clock)
        await w.client.apply_credits(batch, tmp_path / "b.sqlite", clock=w.clock, tag_notes=False)
        notes = [r.json().get("note") for r in posts(w.sandbox)]
    assert notes == ["Gold bonus [ref:gold:1]", "[ref:plain:2]", "Gold bonus", None]


# --- ledger reads that fail -----------------------------------------------------------------


async def test_a_member_whose_ledger_cannot_be_read_is_left_pending(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    batch = [gold(1), gold(2), gold(3)]
    async with world() as w:
        w.sandbox.fail_next(503, method="GET", customer_id="2")
        report = await w.client.apply_credits(batch, path, clock=w.clock)  # not stopped
        assert [r.customer_id for r in posts(w.sandbox)] == ["1", "3"]
        (row,) = report.attention
        assert (row.ref, row.state, row.attempts) == ("gold:2", A.PENDING, 0)
        assert row.error is not None
        assert row.error.startswith("could not read the ledger: ServerError: HTTP 503")
        report = await w.client.apply_credits(batch, path, clock=w.clock)
        assert written(w.sandbox, ["1", "2", "3"]) == {tagged(n): 1 for n in (1, 2, 3)}
    assert report.all_applied


async def test_an_unreadable_ledger_leaves_the_row_unknown(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        # The look before the send passes; every ledger read after the send fails.
        w.sandbox.fail_next(503, method="GET", times=1000, match=after_the_first_post(w.sandbox))
        report = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", clock=w.clock, settle=60, resend_unconfirmed=True
        )
        assert len(posts(w.sandbox)) == 1  # never re-sent without evidence
        assert reads_after_first_post(w.sandbox) > 2  # tried again within the window
    (row,) = report.attention
    assert row.state is A.UNKNOWN
    assert row.error is not None
    assert row.error.startswith("could not read the ledger: ServerError: HTTP 503")


async def test_a_ledger_read_refused_for_the_key_stops_the_run(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with world() as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        w.sandbox.fail_next(401, method="GET", match=after_the_first_post(w.sandbox))
        with pytest.raises(AuthenticationError):
            await w.client.apply_credits([gold(1)], path, clock=w.clock)
        assert journal_states(path) == {"gold:1": "unknown"}
        report = await w.client.apply_credits([gold(1)], path, clock=w.clock)  # key fixed
        assert len(posts(w.sandbox)) == 1
    assert report.all_applied


async def test_a_ledger_read_refused_otherwise_leaves_the_row_unknown(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        w.sandbox.fail_next(400, method="GET", match=after_the_first_post(w.sandbox))
        report = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", clock=w.clock)
    (row,) = report.attention
    assert row.state is A.UNKNOWN
    assert row.error is not None
    assert row.error.startswith("could not read the ledger: BadRequestError: HTTP 400")


@pytest.mark.parametrize("tag_notes", [True, False])
async def test_a_wrong_key_fails_before_anything_is_sent(tmp_path: Path, tag_notes: bool) -> None:
    async with world() as w:
        async with InveterateClient("wrong-key", base_url=w.sandbox.base_url) as client:
            with pytest.raises(BadRequestError, match="Invalid API key"):
                await client.apply_credits(
                    [gold(1), gold(2)], tmp_path / "j.sqlite", tag_notes=tag_notes
                )
        assert posts(w.sandbox) == []
        if not tag_notes:
            assert len(key_checks(w.sandbox)) == 1
    assert journal_states(tmp_path / "j.sqlite") == {"gold:1": "pending", "gold:2": "pending"}


# --- resuming -----------------------------------------------------------------------------


async def test_rows_no_longer_in_the_batch_are_left_alone(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(429, method="POST", customer_id="2")
        await w.client.apply_credits([gold(1), gold(2)], tmp_path / "j.sqlite", clock=w.clock)
        report = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", clock=w.clock)
        assert len(posts(w.sandbox)) == 2
    assert [(row.ref, row.state) for row in report.attention] == [("gold:2", A.PENDING)]


async def test_rows_left_unknown_by_a_crash_are_looked_up_first(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with world() as w:
        async with Journal(path) as journal:  # as a killed process leaves it
            await journal._merge([gold(1), gold(2)])
            for ref in ("gold:1", "gold:2"):
                note = f"Gold bonus [ref:{ref}]"
                assert await journal._mark_sent(ref, A.PENDING, note, w.clock())
        # gold:1's POST had reached the API; gold:2's had not.
        (entry,) = w.sandbox.add_credits(
            "1", [{"amount": "5.00", "note": "Gold bonus [ref:gold:1]", "reason": "api"}]
        )
        report = await w.client.apply_credits(
            [gold(1), gold(2)], path, clock=w.clock, settle=60, resend_unconfirmed=True
        )
        assert [r.customer_id for r in posts(w.sandbox)] == ["2"]
        assert written(w.sandbox, ["1", "2"]) == {tagged(1): 1, tagged(2): 1}
    assert report.all_applied
    rows = await stored_rows(path)
    assert rows[0].entry_id == entry["id"]
    assert (rows[1].attempts, rows[1].resends) == (2, 1)


async def test_a_version_1_journal_is_upgraded_and_its_sending_rows_looked_up(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite"
    stamp = "2026-11-02T10:00:00+00:00"
    make_v1_journal(
        path,
        [
            {
                "ref": "gold:1",
                "customer_id": "1",
                "amount": "5.00",
                "note": "Gold bonus",
                "state": "sending",
                "attempts": 1,
                "sent_note": "Gold bonus [ref:gold:1]",
                "first_sent_at": stamp,
                "last_sent_at": stamp,
            },
            {
                "ref": "gold:2",
                "customer_id": "2",
                "amount": "5.00",
                "note": "Gold bonus",
                "state": "pending",
            },
        ],
    )
    async with world() as w:
        (entry,) = w.sandbox.add_credits(
            "1", [{"amount": "5.00", "note": "Gold bonus [ref:gold:1]", "reason": "api"}]
        )
        report = await w.client.apply_credits([gold(1), gold(2)], path, clock=w.clock)
        assert [r.customer_id for r in posts(w.sandbox)] == ["2"]
    assert report.all_applied
    assert (await stored_rows(path))[0].entry_id == entry["id"]


async def test_an_open_journal_can_be_passed_and_is_not_closed(tmp_path: Path) -> None:
    async with world() as w, Journal(tmp_path / "j.sqlite") as journal:
        await w.client.apply_credits([gold(1)], journal, clock=w.clock)
        assert journal.is_open
        calls = [w.client.apply_credits([gold(2)], journal, clock=w.clock) for _ in range(2)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert sum(isinstance(r, JournalError) for r in results) == 1
        assert sum(isinstance(r, AdjustmentReport) for r in results) == 1
        with pytest.raises(JournalLockedError):
            await w.client.apply_credits([gold(3)], tmp_path / "j.sqlite", clock=w.clock)
        assert [row.ref for row in await journal.rows()] == ["gold:1", "gold:2"]


async def test_a_batch_applied_again_through_the_same_open_journal_resumes(
    tmp_path: Path,
) -> None:
    async with world() as w, Journal(tmp_path / "j.sqlite") as journal:
        w.sandbox.fail_next(429, method="POST", customer_id="2")
        first = await w.client.apply_credits([gold(1), gold(2)], journal, clock=w.clock)
        assert first.counts[A.PENDING] == 1
        second = await w.client.apply_credits([gold(1), gold(2)], journal, clock=w.clock)
        assert len(posts(w.sandbox)) == 3
    assert second.all_applied


async def test_an_earlier_calls_rows_are_left_alone_on_the_same_open_journal(
    tmp_path: Path,
) -> None:
    async with world() as w, Journal(tmp_path / "j.sqlite") as journal:
        w.sandbox.fail_next(429, method="POST", customer_id="2")
        await w.client.apply_credits([gold(1), gold(2)], journal, clock=w.clock)
        report = await w.client.apply_credits([gold(3)], journal, clock=w.clock)
        assert [r.customer_id for r in posts(w.sandbox)] == ["1", "2", "3"]
    assert [(row.ref, row.state) for row in report.attention] == [("gold:2", A.PENDING)]


# --- interruption and the journal failing -------------------------------------------------


async def test_cancelling_a_run_leaves_a_consistent_journal(tmp_path: Path) -> None:
    batch = [gold(n) for n in range(40)]
    path = tmp_path / "j.sqlite"
    marked: list[str] = []
    arrived: list[RecordedRequest] = []
    all_in_flight = asyncio.Event()

    def hang(request: RecordedRequest) -> bool:
        arrived.append(request)
        if len(arrived) == 8:
            all_in_flight.set()
        return True

    def progress(row: AdjustmentRow) -> None:
        if row.state is A.UNKNOWN:
            marked.append(row.ref)

    async with world() as w:
        # The first 8 POSTs (one per worker) are applied on arrival, then get no answer.
        w.sandbox.fail_next(201, method="POST", apply=True, delay=60, times=8, match=hang)
        task = asyncio.ensure_future(
            w.client.apply_credits(batch, path, clock=w.clock, on_progress=progress)
        )
        await asyncio.wait_for(all_in_flight.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        states = journal_states(path)
        # Every row is in a state a re-run understands: the POSTs in flight are unknown
        # (marked before they left), the rest were never sent.
        assert {ref for ref, state in states.items() if state == "unknown"} == set(marked)
        assert Counter(states.values()) == {"unknown": 8, "pending": 32}
        report = await w.client.apply_credits(batch, path, clock=w.clock, settle=30)
        assert written(w.sandbox, [a.customer_id for a in batch]) == {
            tagged(n): 1 for n in range(40)
        }
        assert len(posts(w.sandbox)) == 40
    assert report.all_applied


async def test_cancelled_between_the_mark_and_the_post_goes_back_to_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marked = asyncio.Event()
    real = Journal._mark_sent

    async def mark_then_stall(self: Journal, *args: Any, **kwargs: Any) -> bool:
        done = await real(self, *args, **kwargs)  # durable: the row is "unknown"
        marked.set()
        await asyncio.Event().wait()  # cancelled here, before the POST
        return done  # pragma: no cover - never reached

    monkeypatch.setattr(Journal, "_mark_sent", mark_then_stall)
    path = tmp_path / "j.sqlite"
    async with world() as w:
        task = asyncio.ensure_future(w.client.apply_credits([gold(1)], path, clock=w.clock))
        await asyncio.wait_for(marked.wait(), 30)
        assert journal_states(path) == {"gold:1": "unknown"}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert posts(w.sandbox) == []
    assert journal_states(path) == {"gold:1": "pending"}  # nothing left: nothing to reconcile


async def test_a_journal_taken_by_another_writer_stops_the_run(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"

    def taken_over(row: AdjustmentRow) -> None:
        if row.state is A.UNKNOWN:
            bump_holder_run(path)  # another writer opened the journal meanwhile

    async with world() as w:
        # Adjustments had been sent: the error says so (CLI exit 3), and names the cause.
        with pytest.raises(JournalWriteError, match="opened for writing by another run") as raised:
            await w.client.apply_credits(
                [gold(1), gold(2)], path, clock=w.clock, concurrency=1, on_progress=taken_over
            )
        assert isinstance(raised.value.__cause__, JournalLockedError)
        assert [r.customer_id for r in posts(w.sandbox)] == ["1"]
        # The answer could not be recorded: the row stays unknown, for the ledger to decide.
        assert journal_states(path) == {"gold:1": "unknown", "gold:2": "pending"}
        report = await w.client.apply_credits([gold(1), gold(2)], path, clock=w.clock)
        assert written(w.sandbox, ["1", "2"]) == {tagged(1): 1, tagged(2): 1}
    assert report.all_applied


async def test_a_journal_that_cannot_be_written_after_a_send_is_a_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.sqlite"
    real = JournalFile.record

    def disk_full(self: JournalFile, ref: str, expected: Any, state: Any, *args: Any) -> bool:
        if state is A.APPLIED:
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, ref, expected, state, *args)

    async with world() as w:
        monkeypatch.setattr(JournalFile, "record", disk_full)
        with pytest.raises(JournalWriteError, match=r"database or disk is full.*may have been"):
            await w.client.apply_credits([gold(1)], path, clock=w.clock)
        monkeypatch.undo()
        assert journal_states(path) == {"gold:1": "unknown"}
        report = await w.client.apply_credits([gold(1)], path, clock=w.clock)
        assert len(posts(w.sandbox)) == 1  # found in the ledger, not sent again
    assert report.all_applied


# --- dry runs -----------------------------------------------------------------------------


async def test_a_dry_run_sends_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    seen: list[AdjustmentRow] = []
    async with world() as w:
        plan = await w.client.apply_credits(
            [gold(1), gold(2)], path, dry_run=True, on_progress=seen.append
        )
        assert not path.exists()
        assert [row.ref for row in plan.to_send] == ["gold:1", "gold:2"]
        assert plan.to_send_total == 2
        assert plan.dry_run
        assert plan.counts[A.PENDING] == 2
        w.sandbox.fail_next(500, method="POST", customer_id="2")
        await w.client.apply_credits([gold(1), gold(2)], path, clock=w.clock, settle=0)
        w.sandbox.reset_stats()
        plan = await w.client.apply_credits(
            [gold(1), gold(2), gold(3)], path, dry_run=True, on_progress=seen.append
        )
        assert [row.ref for row in plan.to_send] == ["gold:3"]
        resend = await w.client.apply_credits(
            [gold(1), gold(2), gold(3)], path, dry_run=True, resend_unconfirmed=True
        )
        assert [row.ref for row in resend.to_send] == ["gold:2", "gold:3"]
        assert resend.to_send_total == 2
        async with Journal(path) as journal:  # also on an open journal
            plan = await w.client.apply_credits([gold(4)], journal, dry_run=True)
        assert [row.ref for row in plan.to_send] == ["gold:4"]
        assert w.sandbox.requests == []
    # Each row it would send is reported as it would be sent; nothing else.
    assert [(row.ref, row.state) for row in seen] == [
        ("gold:1", A.PENDING),
        ("gold:2", A.PENDING),
        ("gold:3", A.PENDING),
    ]
    assert plan.counts[A.APPLIED] == 1
    assert plan.counts[A.NOT_APPLIED] == 1
    assert plan.counts[A.PENDING] == 1
    assert journal_states(path) == {"gold:1": "applied", "gold:2": "not_applied"}


async def test_a_dry_run_lists_the_first_rows_and_counts_them_all(tmp_path: Path) -> None:
    batch = [gold(n) for n in range(1500)]
    async with world() as w:
        plan = await w.client.apply_credits(batch, tmp_path / "j.sqlite", dry_run=True)
    assert plan.to_send_total == 1500
    assert [row.ref for row in plan.to_send] == [f"gold:{n}" for n in range(1000)]
    assert len(plan.attention) == 1000
    assert plan.total == 1500
    assert not (tmp_path / "j.sqlite").exists()


async def test_a_dry_run_previews_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with world() as w:
        w.sandbox.fail_next(400, method="POST")
        await w.client.apply_credits([gold(1)], path, clock=w.clock)
        plan = await w.client.apply_credits([gold(1, "6.00")], path, dry_run=True)
    assert nonzero(plan) == {"pending": 1}
    assert plan.sums[A.PENDING] == Decimal("6.00")
    (row,) = plan.to_send
    assert row.adjustment.amount == Decimal("6.00")
    assert journal_states(path) == {"gold:1": "rejected"}


async def test_a_dry_run_refuses_conflicts_too(tmp_path: Path) -> None:
    async with world() as w:
        await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", clock=w.clock)
        with pytest.raises(JournalConflictError):
            await w.client.apply_credits([gold(1, "9")], tmp_path / "j.sqlite", dry_run=True)


# --- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a positive int"),
        ({"settle": -1}, "settle must be >= 0"),
        ({"settle": True}, "settle must be a number of seconds"),
        ({"clock_skew": "60"}, "clock_skew must be a number of seconds"),
        ({"poll_interval": 0}, "poll_interval must be > 0"),
        ({"tag_notes": False, "check_ledger_first": True}, "check_ledger_first=True needs"),
        ({"max_decimal_places": -1}, "max_decimal_places must be an int >= 0"),
        ({"max_decimal_places": True}, "max_decimal_places must be an int >= 0"),
    ],
)
async def test_bad_options_are_refused_before_anything_is_sent(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    async with world() as w:
        with pytest.raises(ValueError, match=message):
            await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **kwargs)
        assert w.sandbox.requests == []
    assert not (tmp_path / "j.sqlite").exists()


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ("gold", "must be an iterable of CreditAdjustment"),
        ([gold(1), {"ref": "x"}], "not a CreditAdjustment: dict"),
        ([gold(1), gold(1, "2")], "ref 'gold:1' is given twice"),
        ([gold(n) for n in range(700)] + [gold(3)], "ref 'gold:3' is given twice"),
    ],
    ids=["str", "not-an-adjustment", "twice", "twice-chunks-apart"],
)
async def test_bad_batches_are_refused_and_nothing_changes(
    tmp_path: Path, batch: Any, message: str, dry_run: bool
) -> None:
    path = tmp_path / "j.sqlite"
    async with world() as w:
        await w.client.apply_credits([gold(1000)], path, clock=w.clock)
        w.sandbox.reset_stats()
        with pytest.raises(ValueError, match=message):
            await w.client.apply_credits(batch, path, clock=w.clock, dry_run=dry_run)
        assert w.sandbox.requests == []
    assert journal_states(path) == {"gold:1000": "applied"}


async def test_a_duplicate_from_a_generator_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    yielded = 0

    def batch() -> Any:
        nonlocal yielded
        for n in [*range(1200), 1]:
            yielded += 1
            yield gold(n)

    async with world() as w:
        with pytest.raises(ValueError, match="ref 'gold:1' is given twice"):
            await w.client.apply_credits(batch(), tmp_path / "j.sqlite", clock=w.clock)
        assert w.sandbox.requests == []
    assert yielded == 1201
    assert journal_states(tmp_path / "j.sqlite") == {}


async def test_max_decimal_places_refuses_a_typo_before_anything_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    batch = [gold(1), gold(2, "5.005"), gold(3)]
    async with world() as w:
        for dry_run in (True, False):
            with pytest.raises(ValueError, match=r"ref 'gold:2': amount 5.005 has more than 2"):
                await w.client.apply_credits(
                    batch, path, clock=w.clock, max_decimal_places=2, dry_run=dry_run
                )
        assert w.sandbox.requests == []
        assert journal_states(path) == {}
        report = await w.client.apply_credits(
            [gold(1), gold(2, "5.5"), gold(3, "7")], path, clock=w.clock, max_decimal_places=2
        )
    assert report.all_applied


async def test_a_read_only_journal_cannot_be_applied_from(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite"):
        pass
    async with world() as w, Journal(tmp_path / "j.sqlite", read_only=True) as journal:
        with pytest.raises(ValueError, match="read_only"):
            await w.client.apply_credits([gold(1)], journal)
        assert w.sandbox.requests == []


async def test_an_empty_batch_on_a_new_journal_does_nothing(tmp_path: Path) -> None:
    async with world() as w:
        report = await w.client.apply_credits([], tmp_path / "j.sqlite", clock=w.clock)
        assert w.sandbox.requests == []
    assert report.total == 0
    assert report.all_applied


def test_adjustments_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="float"):
        CreditAdjustment("r", "1", 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero"):
        CreditAdjustment("r", "1", "0.00")
    with pytest.raises(ValueError, match="ref must be 1 to 200"):
        CreditAdjustment("x" * 201, "1", "1")
    with pytest.raises(ValueError, match="ref must be 1 to 200"):
        CreditAdjustment(" r", "1", "1")
    with pytest.raises(ValueError, match="ref must be a str"):
        CreditAdjustment(7, "1", "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="control characters"):
        CreditAdjustment("a\tb", "1", "1")
    for ref in ("a b", "a[b", "a]b", "gold:[1]", "a\u00a0b", "a\u2003b"):
        with pytest.raises(ValueError, match=r"must not contain '\[', '\]' or whitespace"):
            CreditAdjustment(ref, "1", "1")
    with pytest.raises(ValueError, match="customer_id must not be empty"):
        CreditAdjustment("r", "", "1")
    with pytest.raises(ValueError, match="note must be a str"):
        CreditAdjustment("r", "1", "1", note=b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="force must be a bool"):
        CreditAdjustment("r", "1", "1", force="yes")  # type: ignore[arg-type]
    assert CreditAdjustment("r", 42, 5).customer_id == "42"
    assert CreditAdjustment("gold:1/ü", "1", "1").tagged_note() == "[ref:gold:1/ü]"
    assert CreditAdjustment("r", "1", "1", note="Hi").tagged_note() == "Hi [ref:r]"
    assert str(AdjustmentState.NEEDS_REVIEW) == "needs_review"
    assert "sending" not in {state.value for state in AdjustmentState}


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (BadRequestError(400, "bad amount"), A.REJECTED),
        (BadRequestError(400, "Invalid API key"), A.PENDING),
        (AuthenticationError(401, "no"), A.PENDING),
        (PermissionDeniedError(403, "no"), A.PENDING),
        (NotFoundError(404, "Customer not found"), A.REJECTED),
        (RateLimitError(429, "slow"), A.PENDING),
        (APIStatusError(302, "moved"), A.UNKNOWN),
        (APIStatusError(408, "timeout"), A.UNKNOWN),
        (APIStatusError(409, "conflict"), A.UNKNOWN),
        (APIStatusError(422, "unprocessable"), A.UNKNOWN),
        (ServerError(500, "oops", outcome_unknown=True), A.UNKNOWN),
        (APIConnectionError("refused", outcome_unknown=False), A.PENDING),
        (APIConnectionError("reset", outcome_unknown=True), A.UNKNOWN),
        (APITimeoutError("slow", outcome_unknown=True), A.UNKNOWN),
        (InvalidResponseError("not json", status=201, outcome_unknown=True), A.APPLIED),
        (InvalidResponseError("not json", status=None, outcome_unknown=True), A.UNKNOWN),
    ],
)
def test_what_an_error_means_for_a_row(error: Any, state: AdjustmentState) -> None:
    assert outcome(error) is state


@pytest.mark.parametrize(
    ("data", "entry_id"),
    [
        ({"id": "cr_1", "amount": Decimal("5.00")}, "cr_1"),
        ({"id": 7, "amount": 5}, "7"),
        ({"id": "cr_1", "amount": Decimal("4.99")}, None),
        ({"id": "cr_1", "amount": "n/a"}, None),
        ({"id": True, "amount": 5}, None),
        ({"amount": 5}, None),
        ([], None),
        (None, None),
    ],
)
def test_an_entry_id_is_taken_from_an_answer_that_echoes_the_entry(
    data: Any, entry_id: str | None
) -> None:
    assert echoed_entry_id(CreditResult("Credit created", data), gold(1)) == entry_id


def test_the_report_of_rows() -> None:
    report = AdjustmentReport.of([])
    assert report.total == 0
    assert report.counts[A.APPLIED] == 0
    assert report.all_applied
    assert (report.dry_run, report.to_send, report.to_send_total) == (False, (), 0)
    row = AdjustmentRow(gold(1), A.PENDING)
    assert AdjustmentReport.of([row]).attention == (row,)
    many = [AdjustmentRow(gold(n), A.UNKNOWN if n % 2 else A.APPLIED) for n in range(2500)]
    report = AdjustmentReport.of(many)
    assert report.counts[A.UNKNOWN] == 1250
    assert report.sums[A.UNKNOWN] == Decimal("6250.00")
    assert [r.ref for r in report.attention] == [f"gold:{n}" for n in range(1, 2000, 2)]
