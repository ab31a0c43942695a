"""The SDK's bulk path as the job benchmark runs it: ``apply_credits`` from the batch file.

"default": ``tag_notes=True, check_ledger_first=True``, what a run does unless told
otherwise; "opt-out": both off. ``check_ledger_first`` is passed only when this version of
``apply_credits`` has it (:data:`HAS_CHECK_LEDGER_FIRST`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from benchmarks._jobs_loops import Outcome
from benchmarks._jobs_spec import Job, read_csv
from benchmarks.cluster import API_KEY
from inveterate_async import CreditAdjustment, InveterateClient

HAS_CHECK_LEDGER_FIRST = (
    "check_ledger_first" in inspect.signature(InveterateClient.apply_credits).parameters
)


def options(default: bool) -> dict[str, Any]:
    """The keyword arguments of the default (True) or the opt-out (False) run."""
    chosen: dict[str, Any] = {"tag_notes": default}
    if HAS_CHECK_LEDGER_FIRST:
        chosen["check_ledger_first"] = default
    return chosen


def describe(default: bool) -> str:
    """The call, for the report."""
    text = ", ".join(f"{name}={value}" for name, value in options(default).items())
    if not HAS_CHECK_LEDGER_FIRST:
        text += " (no check_ledger_first in this version)"
    return f"apply_credits({text})"


async def _apply(base_url: str, job: Job, csv_path: str, workdir: Path, default: bool) -> Outcome:
    batch = [
        CreditAdjustment(ref=row.ref, customer_id=row.member_id, amount=row.amount, note=row.note)
        for row in read_csv(csv_path)
    ]
    async with InveterateClient(API_KEY, base_url=base_url) as client:
        report = await client.apply_credits(
            batch, workdir / "journal.sqlite", concurrency=job.concurrency, **options(default)
        )
    if not report.all_applied:
        counts = {str(state): count for state, count in report.counts.items() if count}
        raise RuntimeError(f"not all applied: {counts}")
    return Outcome(report.total, describe(default))


async def default_run(base_url: str, job: Job, csv_path: str, workdir: Path) -> Outcome:
    """``apply_credits`` with tags and the ledger check."""
    return await _apply(base_url, job, csv_path, workdir, default=True)


async def opt_out_run(base_url: str, job: Job, csv_path: str, workdir: Path) -> Outcome:
    """``apply_credits`` without tags or the ledger check."""
    return await _apply(base_url, job, csv_path, workdir, default=False)
