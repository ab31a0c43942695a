"""The fault matrix: each write fault on random rows of a 200-row batch, with and without
delayed visibility. At the end every ref is applied exactly once in the sandbox's ledger,
or reported as not applied, unknown or needing review; the report's counts match the ledger.

Time is a ManualClock shared by the sandbox, the client and apply_credits: settle windows
and visibility delays play out in no real time, identically on every run. Only the timeout
faults wait for real (the client's 0.5 s timeout, 16 rows at a time).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from inveterate_async import AdjustmentRow, AdjustmentState, CreditAdjustment
from inveterate_async.testing import RecordedRequest, Sandbox

from .bulk_helpers import body_of, refs_written, wanted, world, written

ROWS = 200
MEMBERS = 50
FAULTY_SHARE = 0.15
SETTLE = 300.0  # seconds of the ManualClock
VISIBILITY_DELAY = 60.0

FAULTS: Mapping[str, Mapping[str, Any]] = {
    "500 before applying": {"status": 500},
    "500 after applying": {"status": 500, "apply": True},
    "connection lost after applying": {"apply": True, "disconnect": True},
    "timeout after applying": {"status": 201, "apply": True, "delay": 30.0},
    "timeout, never applied": {"status": 500, "delay": 30.0},
}


def batch(seed: int) -> list[CreditAdjustment]:
    """200 adjustments on 50 members, from few amounts and notes: a member often gets
    several identical ones, which only their count tells apart."""
    rng = random.Random(seed)
    return [
        CreditAdjustment(
            ref=f"gold-2026-11:{n}",
            customer_id=f"m{n % MEMBERS}",
            amount=rng.choice(["5.00", "5.00", "-2.50", "12.34"]),
            note=rng.choice(["Gold bonus", "Gold bonus", None]),
            force=rng.choice([None, None, True]),
        )
        for n in range(ROWS)
    ]


def inject(
    sandbox: Sandbox, rows: list[CreditAdjustment], faults: list[str], seed: int, tagged: bool
) -> Counter[str]:
    """Give random rows one fault each (the first POST with that row's body gets it)."""
    rng = random.Random(seed)
    injected: Counter[str] = Counter()
    for adjustment in rng.sample(rows, int(ROWS * FAULTY_SHARE)):
        fault = rng.choice(faults)
        injected[fault] += 1
        sandbox.fail_next(
            method="POST",
            customer_id=adjustment.customer_id,
            match=same_body(body_of(adjustment, tagged=tagged)),
            **FAULTS[fault],
        )
    return injected


def same_body(body: Mapping[str, Any]) -> Callable[[RecordedRequest], bool]:
    return lambda request: bool(request.json() == body)


CELLS = [
    pytest.param([fault], delay, False, True, id=f"{fault}, visibility delay {delay:g} s")
    for fault in FAULTS
    for delay in (0.0, VISIBILITY_DELAY)
] + [
    pytest.param(list(FAULTS), delay, tagged, resend, id=f"all faults, {name}, delay {delay:g} s")
    for delay in (0.0, VISIBILITY_DELAY)
    for name, tagged, resend in (("tagged", True, True), ("no re-send", False, False))
]


@pytest.mark.parametrize(("faults", "visibility_delay", "tagged", "resend"), CELLS)
async def test_every_ref_applied_exactly_once_or_reported(
    tmp_path: Path, faults: list[str], visibility_delay: float, tagged: bool, resend: bool
) -> None:
    seed = sum(map(ord, f"{faults}{visibility_delay}{tagged}{resend}"))
    rows = batch(seed)
    members = [adjustment.customer_id for adjustment in rows]
    seen: list[AdjustmentRow] = []
    async with world(visibility_delay=visibility_delay, timeout=0.5) as w:
        injected = inject(w.sandbox, rows, faults, seed, tagged)
        report = await w.client.apply_credits(
            rows,
            tmp_path / "batch.sqlite",
            concurrency=16,
            settle=SETTLE,
            tag_notes=tagged,
            resend_unconfirmed=resend,
            on_progress=seen.append,
            clock=w.clock,
        )
        in_ledger = written(w.sandbox, members)
        tags = refs_written(w.sandbox, members)
        posts = sum(1 for r in w.sandbox.requests if r.method == "POST")

    states = {row.ref: row.state for row in seen}  # the last state of each ref
    applied = [a for a in rows if states[a.ref] is AdjustmentState.APPLIED]
    missing = [a for a in rows if states[a.ref] is not AdjustmentState.APPLIED]
    expected = wanted(applied, tagged=tagged)
    # By (member, amount, note): more credits than rows reported applied, or fewer.
    twice = sum(max(0, in_ledger[key] - expected[key]) for key in in_ledger)
    lost = sum(max(0, expected[key] - in_ledger[key]) for key in expected)
    counts = {str(state): count for state, count in report.counts.items() if count}
    figures = (
        f"rows {ROWS}, faults {dict(injected)}, {posts} POSTs, report {counts}, "
        f"applied twice {twice}, lost {lost} (seed {seed})"
    )
    print(figures)
    assert (twice, lost) == (0, 0), figures

    # The report is the journal's: its counts agree with the states the rows went through.
    assert report.total == ROWS, figures
    assert report.counts[AdjustmentState.APPLIED] == len(applied), figures
    assert {row.ref for row in report.attention} == {a.ref for a in missing}, figures
    # The ledger holds exactly the applied rows, each once: nothing twice, nothing lost.
    assert in_ledger == wanted(applied, tagged=tagged), figures
    assert sum(in_ledger.values()) == report.counts[AdjustmentState.APPLIED], figures
    if tagged:
        assert tags == Counter(a.ref for a in applied), figures
    # Whatever is not applied is said so, and for a reason a person can act on.
    for row in report.attention:
        assert row.state in (AdjustmentState.NOT_APPLIED, AdjustmentState.UNKNOWN), figures
        assert row.error, figures
    if resend:
        # The settle window is longer than the visibility delay: everything is resolved.
        assert report.all_applied, figures
    else:
        assert report.counts[AdjustmentState.NOT_APPLIED] == sum(
            injected[f] for f in ("500 before applying", "timeout, never applied")
        ), figures
    claimed = [row for row in seen if row.entry_id is not None]
    assert len({row.entry_id for row in claimed}) == len({row.ref for row in claimed}), figures
    assert Decimal(sum(a.amount for a in applied)) == report.sums[AdjustmentState.APPLIED]
