"""apply_credits end to end against the Sandbox: outcomes, resume, dry runs, reconciliation,
review, interruption, and its arguments."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from inveterate_async import (
    AdjustmentRow,
    AdjustmentState,
    APIConnectionError,
    BadRequestError,
    CreditAdjustment,
    CreditResult,
    InvalidResponseError,
    InveterateClient,
    Journal,
    JournalConflictError,
    JournalError,
    JournalLockedError,
    RateLimitError,
    ServerError,
)
from inveterate_async._bulk import _echoed_entry_id, _state_after
from inveterate_async.testing import RecordedRequest

from .bulk_helpers import api_entries, world, written

A = AdjustmentState


def gold(
    n: int, amount: str = "5.00", member: str | None = None, **kwargs: Any
) -> CreditAdjustment:
    return CreditAdjustment(f"gold:{n}", member or str(n), amount, note="Gold bonus", **kwargs)


def posts(sandbox: Any) -> list[Any]:
    return [r for r in sandbox.requests if r.method == "POST"]


def journal_states(path: Path) -> dict[str, str]:
    connection = sqlite3.connect(path)
    try:
        return dict(connection.execute("SELECT ref, state FROM adjustments ORDER BY position"))
    finally:
        connection.close()


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
            {"amount": Decimal("5.00"), "note": "Gold bonus"},
            {"amount": Decimal("-2.50"), "note": "Gold bonus", "force": True},
            {"amount": Decimal("0.10"), "note": "Gold bonus"},
        ]
        entries = api_entries(w.sandbox, ["1", "2", "3"])
    assert report.all_applied
    assert report.sums[A.APPLIED] == Decimal("2.60")
    assert report.attention == ()
    assert Counter(state for _, state in seen) == {A.SENDING: 3, A.APPLIED: 3}
    for ref in ("gold:1", "gold:2", "gold:3"):
        assert seen.index((ref, A.SENDING)) < seen.index((ref, A.APPLIED))
    async with Journal(tmp_path / "j.sqlite", read_only=True) as journal:
        rows = await journal.rows()
    # The 201 echoed the new entry: its id is claimed, and the times are recorded.
    assert [row.entry_id for row in rows] == [entry["id"] for entry in entries]
    assert all(row.attempts == 1 and row.first_sent_at == row.last_sent_at for row in rows)


async def test_a_rerun_skips_applied_and_rejected_rows(tmp_path: Path) -> None:
    batch = [gold(1), gold(2), gold(3)]
    async with world() as w:
        w.sandbox.fail_next(400, method="POST", customer_id="2", body={"message": "No member"})
        first = await w.client.apply_credits(batch, tmp_path / "j.sqlite", clock=w.clock)
        w.sandbox.reset_stats()
        second = await w.client.apply_credits(batch, tmp_path / "j.sqlite", clock=w.clock)
        assert posts(w.sandbox) == []
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
    assert report.all_applied


async def test_an_edit_of_a_row_that_may_have_been_applied_is_refused(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", clock=w.clock, settle=0)
        w.sandbox.reset_stats()
        with pytest.raises(JournalConflictError, match=r"gold:1 \(applied: amount"):
            await w.client.apply_credits([gold(1, "6")], tmp_path / "j.sqlite", clock=w.clock)
        assert w.sandbox.requests == []  # refused before anything was sent


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
    assert report.all_applied


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
    async with Journal(tmp_path / "j.sqlite", read_only=True) as journal:
        (row,) = await journal.rows()
    assert row.entry_id == entry["id"]
    assert row.error is not None
    assert "ServerError: HTTP 500" in row.error  # the last error is kept as history
    assert 90 <= waited < 300  # it looked until the entry showed, not for the whole window


async def test_not_applied_after_the_window_is_resent_only_when_allowed(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(500, method="POST")  # before applying
        report = await w.client.apply_credits(
            [gold(1), gold(2)], tmp_path / "j.sqlite", clock=w.clock, settle=120
        )
        assert report.counts[A.NOT_APPLIED] == 1
        assert written(w.sandbox, ["1", "2"]) == {("2", Decimal(5), "Gold bonus"): 1}
        report = await w.client.apply_credits(
            [gold(1), gold(2)],
            tmp_path / "j.sqlite",
            clock=w.clock,
            settle=120,
            resend_unconfirmed=True,
        )
        assert written(w.sandbox, ["1", "2"]) == {
            ("1", Decimal(5), "Gold bonus"): 1,
            ("2", Decimal(5), "Gold bonus"): 1,
        }
    assert report.all_applied


async def test_a_write_shown_after_the_settle_window_is_the_documented_limit(
    tmp_path: Path,
) -> None:
    """The guarantee rests on writes showing within the settle window. Here one shows
    later: it is re-sent (as allowed), so applied twice, and once the late write shows, a
    run flags the row for review with both entries."""
    async with world(visibility_delay=600) as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        options: dict[str, Any] = {"clock": w.clock, "settle": 300, "resend_unconfirmed": True}
        report = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **options)
        assert report.all_applied  # the re-send was answered 201
        entries = api_entries(w.sandbox, ["1"])
        assert len(entries) == 2  # applied twice: the limit
        report = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **options)
        assert report.all_applied  # the late write is not visible yet
        w.clock.advance(700)  # both writes are visible now
        report = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **options)
        assert len(posts(w.sandbox)) == 2
    (row,) = report.attention
    assert row.state is A.NEEDS_REVIEW
    assert row.resends == 1
    assert row.error is not None
    assert "applied twice" in row.error
    assert sorted(c.entry_id for c in row.candidates) == [e["id"] for e in entries]


async def test_a_late_write_is_found_before_a_resend(tmp_path: Path) -> None:
    async with world(visibility_delay=600) as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        options: dict[str, Any] = {"clock": w.clock, "settle": 300, "tag_notes": True}
        report = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **options)
        assert report.counts[A.NOT_APPLIED] == 1  # not re-sent: not allowed
        w.clock.advance(600)
        report = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", resend_unconfirmed=True, **options
        )
        assert len(posts(w.sandbox)) == 1
    # Checked again before anything is re-sent: it was applied after all.
    assert report.all_applied


async def test_look_alikes_make_a_row_need_review_with_the_evidence(tmp_path: Path) -> None:
    async with world() as w:
        now = datetime.fromtimestamp(w.clock(), timezone.utc)
        stamp = (now - timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
        w.sandbox.add_credits("1", [{"amount": "5.00", "note": "Gold bonus", "createdAt": stamp}])
        w.sandbox.fail_next(500, method="POST", apply=True)
        report = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", clock=w.clock, resend_unconfirmed=True
        )
        (row,) = report.attention
        assert row.state is A.NEEDS_REVIEW
        assert sorted(c.entry_id for c in row.candidates) == [
            e["id"] for e in w.sandbox.ledger("1")
        ]
        assert all(c.amount == Decimal("5.00") for c in row.candidates)
        w.sandbox.reset_stats()
        again = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", clock=w.clock, resend_unconfirmed=True
        )
        assert posts(w.sandbox) == []  # never guessed, never re-sent
    assert again.counts[A.NEEDS_REVIEW] == 1


async def test_tag_notes_marks_each_note_with_its_ref(tmp_path: Path) -> None:
    batch = [gold(1), CreditAdjustment("plain:2", "2", "1.00")]
    async with world() as w:
        await w.client.apply_credits(batch, tmp_path / "j.sqlite", tag_notes=True, clock=w.clock)
        notes = [r.json().get("note") for r in posts(w.sandbox)]
    assert notes == ["Gold bonus [ref:gold:1]", "[ref:plain:2]"]


async def test_a_dry_run_sends_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with world() as w:
        plan = await w.client.apply_credits([gold(1), gold(2)], path, dry_run=True)
        assert not path.exists()
        assert [row.ref for row in plan.to_send] == ["gold:1", "gold:2"]
        assert plan.dry_run
        assert plan.counts[A.PENDING] == 2
        w.sandbox.fail_next(500, method="POST", customer_id="2")
        await w.client.apply_credits([gold(1), gold(2)], path, clock=w.clock, settle=0)
        w.sandbox.reset_stats()
        plan = await w.client.apply_credits([gold(1), gold(2), gold(3)], path, dry_run=True)
        assert [row.ref for row in plan.to_send] == ["gold:3"]
        resend = await w.client.apply_credits(
            [gold(1), gold(2), gold(3)], path, dry_run=True, resend_unconfirmed=True
        )
        assert [row.ref for row in resend.to_send] == ["gold:2", "gold:3"]
        async with Journal(path) as journal:  # also on an open journal
            plan = await w.client.apply_credits([gold(4)], journal, dry_run=True)
        assert [row.ref for row in plan.to_send] == ["gold:4"]
        assert w.sandbox.requests == []
    assert plan.counts[A.APPLIED] == 1
    assert plan.counts[A.NOT_APPLIED] == 1
    assert journal_states(path) == {"gold:1": "applied", "gold:2": "not_applied"}


async def test_a_dry_run_refuses_conflicts_too(tmp_path: Path) -> None:
    async with world() as w:
        await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", clock=w.clock)
        with pytest.raises(JournalConflictError):
            await w.client.apply_credits([gold(1, "9")], tmp_path / "j.sqlite", dry_run=True)


async def test_a_wrong_key_fails_before_anything_is_sent(tmp_path: Path) -> None:
    async with world() as w:
        async with InveterateClient("wrong-key", base_url=w.sandbox.base_url) as client:
            with pytest.raises(BadRequestError, match="Invalid API key"):
                await client.apply_credits([gold(1)], tmp_path / "j.sqlite")
        assert posts(w.sandbox) == []
    assert journal_states(tmp_path / "j.sqlite") == {"gold:1": "pending"}


async def test_an_unreadable_ledger_leaves_the_row_unknown(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        # The first read (the key check) passes; every ledger read after it fails.
        w.sandbox.fail_next(503, method="GET", times=1000, match=lambda r: "limit" not in r.query)
        report = await w.client.apply_credits(
            [gold(1)], tmp_path / "j.sqlite", clock=w.clock, settle=60, resend_unconfirmed=True
        )
        assert len(posts(w.sandbox)) == 1  # never re-sent without evidence
    (row,) = report.attention
    assert row.state is A.UNKNOWN
    assert row.error is not None
    assert row.error.startswith("could not read the ledger: ServerError: HTTP 503")


async def test_a_refused_ledger_read_stops_the_run(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(500, method="POST", apply=True)
        w.sandbox.fail_next(400, method="GET", match=lambda r: "limit" not in r.query)
        with pytest.raises(BadRequestError):
            await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", clock=w.clock)
    assert journal_states(tmp_path / "j.sqlite") == {"gold:1": "unknown"}


async def test_rows_no_longer_in_the_batch_are_left_alone(tmp_path: Path) -> None:
    async with world() as w:
        w.sandbox.fail_next(429, method="POST", customer_id="2")
        await w.client.apply_credits([gold(1), gold(2)], tmp_path / "j.sqlite", clock=w.clock)
        report = await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", clock=w.clock)
        assert len(posts(w.sandbox)) == 2
    assert [(row.ref, row.state) for row in report.attention] == [("gold:2", A.PENDING)]


async def test_rows_found_sending_after_a_crash_are_reconciled_first(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    async with world() as w:
        async with Journal(path) as journal:  # as a killed process leaves it
            now = datetime.fromtimestamp(w.clock(), timezone.utc)
            await journal._merge([gold(1), gold(2)], now, write=True)
            await journal._mark_sending("gold:1", "Gold bonus", now)
            await journal._mark_sending("gold:2", "Gold bonus", now)
        # gold:1's POST had reached the API; gold:2's had not.
        w.sandbox.add_credits(
            "1", [{"amount": "5.00", "note": "Gold bonus", "createdAt": now.isoformat()}]
        )
        report = await w.client.apply_credits(
            [gold(1), gold(2)], path, clock=w.clock, settle=60, resend_unconfirmed=True
        )
        assert [r.customer_id for r in posts(w.sandbox)] == ["2"]
    assert report.all_applied


async def test_an_open_journal_can_be_passed_and_is_not_closed(tmp_path: Path) -> None:
    async with world() as w, Journal(tmp_path / "j.sqlite") as journal:
        await w.client.apply_credits([gold(1)], journal, clock=w.clock)
        assert journal.is_open
        calls = [w.client.apply_credits([gold(2)], journal, clock=w.clock) for _ in range(2)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert sum(isinstance(r, JournalError) for r in results) == 1
        with pytest.raises(JournalLockedError):
            await w.client.apply_credits([gold(3)], tmp_path / "j.sqlite", clock=w.clock)
        assert [row.ref for row in await journal.rows()] == ["gold:1", "gold:2"]


async def test_cancelling_a_run_leaves_a_consistent_journal(tmp_path: Path) -> None:
    batch = [gold(n) for n in range(40)]
    path = tmp_path / "j.sqlite"
    sending: list[str] = []
    arrived: list[RecordedRequest] = []
    all_in_flight = asyncio.Event()

    def hang(request: RecordedRequest) -> bool:
        arrived.append(request)
        if len(arrived) == 8:
            all_in_flight.set()
        return True

    def progress(row: AdjustmentRow) -> None:
        if row.state is A.SENDING:
            sending.append(row.ref)

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
        # Every row is in a state a re-run understands: the POSTs in flight are unknown,
        # the rest were never sent.
        assert {ref for ref, state in states.items() if state == "unknown"} == set(sending)
        assert Counter(states.values()) == {"unknown": 8, "pending": 32}
        report = await w.client.apply_credits(batch, path, clock=w.clock, settle=30)
        assert written(w.sandbox, [a.customer_id for a in batch]) == {
            (str(n), Decimal(5), "Gold bonus"): 1 for n in range(40)
        }
        assert len(posts(w.sandbox)) == 40
    assert report.all_applied


async def test_cancelled_between_the_mark_and_the_post_goes_back_to_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marked = asyncio.Event()
    real = Journal._mark_sending

    async def mark_then_stall(self: Journal, *args: Any, **kwargs: Any) -> AdjustmentRow:
        row = await real(self, *args, **kwargs)  # durable: the row is "sending"
        marked.set()
        await asyncio.Event().wait()  # cancelled here, before the POST
        return row  # pragma: no cover - never reached

    monkeypatch.setattr(Journal, "_mark_sending", mark_then_stall)
    path = tmp_path / "j.sqlite"
    async with world() as w:
        task = asyncio.ensure_future(w.client.apply_credits([gold(1)], path, clock=w.clock))
        await asyncio.wait_for(marked.wait(), 30)
        assert journal_states(path) == {"gold:1": "sending"}
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert posts(w.sandbox) == []
    assert journal_states(path) == {"gold:1": "pending"}  # nothing left: nothing to reconcile


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a positive int"),
        ({"settle": -1}, "settle must be >= 0"),
        ({"settle": True}, "settle must be a number of seconds"),
        ({"clock_skew": "60"}, "clock_skew must be a number of seconds"),
        ({"poll_interval": 0}, "poll_interval must be > 0"),
    ],
)
async def test_bad_options_are_refused_before_anything_is_sent(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    async with world() as w:
        with pytest.raises(ValueError, match=message):
            await w.client.apply_credits([gold(1)], tmp_path / "j.sqlite", **kwargs)
    assert not (tmp_path / "j.sqlite").exists()


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ("gold", "must be an iterable of CreditAdjustment"),
        ([gold(1), {"ref": "x"}], "not a CreditAdjustment: dict"),
        ([gold(1), gold(1, "2")], "ref 'gold:1' is given twice"),
    ],
)
async def test_bad_batches_are_refused(tmp_path: Path, batch: Any, message: str) -> None:
    async with world() as w:
        with pytest.raises(ValueError, match=message):
            await w.client.apply_credits(batch, tmp_path / "j.sqlite")


async def test_a_read_only_journal_cannot_be_applied_from(tmp_path: Path) -> None:
    async with world() as w, Journal(tmp_path / "j.sqlite"):
        pass
    async with world() as w, Journal(tmp_path / "j.sqlite", read_only=True) as journal:
        with pytest.raises(ValueError, match="read_only"):
            await w.client.apply_credits([gold(1)], journal)


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
    with pytest.raises(ValueError, match="ref must be a str"):
        CreditAdjustment(7, "1", "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="control characters"):
        CreditAdjustment("a\tb", "1", "1")
    with pytest.raises(ValueError, match="customer_id must not be empty"):
        CreditAdjustment("r", "", "1")
    with pytest.raises(ValueError, match="note must be a str"):
        CreditAdjustment("r", "1", "1", note=b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="force must be a bool"):
        CreditAdjustment("r", "1", "1", force="yes")  # type: ignore[arg-type]
    assert CreditAdjustment("r", 42, 5).customer_id == "42"
    assert str(AdjustmentState.NEEDS_REVIEW) == "needs_review"


@pytest.mark.parametrize(
    ("error", "previous", "state"),
    [
        (BadRequestError(400, "bad"), A.PENDING, A.REJECTED),
        (RateLimitError(429, "slow"), A.NOT_APPLIED, A.NOT_APPLIED),
        (ServerError(500, "oops", outcome_unknown=True), A.PENDING, A.UNKNOWN),
        (APIConnectionError("refused", outcome_unknown=False), A.PENDING, A.PENDING),
        (APIConnectionError("reset", outcome_unknown=True), A.PENDING, A.UNKNOWN),
        (InvalidResponseError("not json", outcome_unknown=True), A.PENDING, A.UNKNOWN),
    ],
)
def test_what_an_error_means_for_a_row(
    error: Any, previous: AdjustmentState, state: AdjustmentState
) -> None:
    assert _state_after(error, previous) is state


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
    assert _echoed_entry_id(CreditResult("Credit created", data), gold(1)) == entry_id


def test_the_report_of_no_rows() -> None:
    from inveterate_async import AdjustmentReport

    report = AdjustmentReport.of([])
    assert report.total == 0
    assert report.counts[A.APPLIED] == 0
    row = AdjustmentRow(gold(1), A.PENDING)
    assert AdjustmentReport.of([row]).attention == (row,)
