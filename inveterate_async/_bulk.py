"""``apply_credits``: a batch of adjustments sent through a journal, reconciled, resumable.

A run: add the batch to the journal; turn rows a dead process left "sending" into unknown
rows; check the key with one read; reconcile every unknown row against its member's ledger
before anything is sent; then send the pending rows (and, if allowed, re-send rows found
not applied) and reconcile again, until nothing is left to send. Each row is sent at most
once per run, plus at most one re-send.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar

from ._adjustments import AdjustmentReport, AdjustmentRow, AdjustmentState
from ._adjustments import CreditAdjustment as Adjustment
from ._bulk_options import BulkOptions, check_batch
from ._bulk_reconcile import Reconciler
from ._errors import APIStatusError, InveterateError, JournalError, RateLimitError
from ._journal import Journal
from ._models import CreditResult

if TYPE_CHECKING:
    from ._client import InveterateClient

T = TypeVar("T")

_STOPPED_WHILE_SENDING = "interrupted while sending: it may have been applied"


async def apply_credits(
    client: InveterateClient,
    adjustments: Iterable[Adjustment],
    journal: str | os.PathLike[str] | Journal,
    options: BulkOptions,
    *,
    dry_run: bool,
) -> AdjustmentReport:
    """Run a batch through a journal (see ``InveterateClient.apply_credits``)."""
    batch = check_batch(adjustments)
    if dry_run:
        return await _dry_run(batch, journal, options)
    store = journal if isinstance(journal, Journal) else Journal(journal)
    if store.read_only:
        raise ValueError("a journal opened read_only cannot be applied from")
    opened_here = not store.is_open
    if opened_here:
        await store.open()
    elif store._busy:
        raise JournalError("the journal is in use by another apply_credits call", path=store.path)
    store._busy = True
    try:
        return await _Run(client, store, options).execute(batch)
    finally:
        store._busy = False
        if opened_here:
            await store.close()


async def _dry_run(
    batch: list[Adjustment], journal: str | os.PathLike[str] | Journal, options: BulkOptions
) -> AdjustmentReport:
    now = options.now()
    if isinstance(journal, Journal) and journal.is_open:
        rows = await journal._merge(batch, now, write=False)
    else:
        path = journal.path if isinstance(journal, Journal) else os.fspath(journal)
        if await asyncio.to_thread(os.path.exists, path):
            async with Journal(path, read_only=True) as store:
                rows = await store._merge(batch, now, write=False)
        else:
            rows = [AdjustmentRow(adjustment, AdjustmentState.PENDING) for adjustment in batch]
    refs = {adjustment.ref for adjustment in batch}
    sendable = {AdjustmentState.PENDING}
    if options.resend_unconfirmed:
        sendable.add(AdjustmentState.NOT_APPLIED)
    to_send = [row for row in rows if row.ref in refs and row.state in sendable]
    return AdjustmentReport.of(rows, dry_run=True, to_send=to_send)


class _Run:
    def __init__(self, client: InveterateClient, journal: Journal, options: BulkOptions) -> None:
        self._client = client
        self._journal = journal
        self._options = options
        self._reconciler = Reconciler(client, journal, options, self._record)
        self._sent: set[str] = set()  # refs sent from pending in this run
        self._resent: set[str] = set()  # refs re-sent (from not applied) in this run

    def _notify(self, row: AdjustmentRow) -> None:
        if self._options.on_progress is not None:
            self._options.on_progress(row)

    async def _record(self, ref: str, state: AdjustmentState, **details: Any) -> None:
        self._notify(await self._journal._record(ref, state, self._options.now(), **details))

    async def execute(self, batch: list[Adjustment]) -> AdjustmentReport:
        await self._journal._merge(batch, self._options.now(), write=True)
        for row in await self._journal._recover(self._options.now()):
            self._notify(row)
        refs = {adjustment.ref for adjustment in batch}
        members = [row.adjustment.customer_id for row in await self._sendable(refs)]
        members += await self._reconciler.members()
        if members:
            # One read first: a wrong key or URL fails here, before any write.
            await self._client.get_credits_page(members[0], limit=1)
        await self._reconcile()
        while rows := await self._sendable(refs):
            await self._each(rows, self._send)
            await self._reconcile()
        return await self._journal.report()

    async def _each(self, items: Sequence[T], work: Callable[[T], Awaitable[None]]) -> None:
        """``work`` on every item, ``concurrency`` at a time."""
        pending = iter(items)

        async def worker() -> None:
            for item in pending:
                await work(item)

        await _all(worker() for _ in range(min(self._options.concurrency, len(items))))

    async def _sendable(self, refs: Collection[str]) -> list[AdjustmentRow]:
        return [row for row in await self._journal.rows() if self._to_send(row, refs)]

    def _to_send(self, row: AdjustmentRow, refs: Collection[str]) -> bool:
        if row.ref not in refs:
            return False  # dropped from the batch: left as it is
        if row.state is AdjustmentState.PENDING:
            return row.ref not in self._sent
        return (
            row.state is AdjustmentState.NOT_APPLIED
            and self._options.resend_unconfirmed
            and row.ref not in self._resent
        )

    # --- sending --------------------------------------------------------------------------

    async def _send(self, row: AdjustmentRow) -> None:
        adjustment = row.adjustment
        previous = row.state
        if previous is AdjustmentState.NOT_APPLIED:
            # The same note as the first time: a late first write and the re-send then
            # both match this row, and show up as needing review.
            note = row.sent_note
            self._resent.add(row.ref)
        else:
            note = adjustment.tagged_note() if self._options.tag_notes else adjustment.note
            self._sent.add(row.ref)
        resend = previous is AdjustmentState.NOT_APPLIED
        try:
            marked = await self._journal._mark_sending(
                row.ref, note, self._options.now(), resend=resend
            )
        except asyncio.CancelledError:
            # The mark may still be written; nothing was sent, so undo it.
            await self._record(row.ref, previous)
            raise
        self._notify(marked)
        try:
            result = await self._client.create_credit(
                adjustment.customer_id, adjustment.amount, note=note, force=adjustment.force
            )
        except asyncio.CancelledError:
            await self._record(row.ref, AdjustmentState.UNKNOWN, error=_STOPPED_WHILE_SENDING)
            raise
        except InveterateError as error:
            state = _state_after(error, previous)
            await self._record(row.ref, state, error=f"{type(error).__name__}: {error}")
        else:
            entry_id = _echoed_entry_id(result, adjustment)
            await self._record(row.ref, AdjustmentState.APPLIED, entry_id=entry_id)

    # --- reconciling ----------------------------------------------------------------------

    async def _reconcile(self) -> None:
        await self._each(await self._reconciler.members(), self._reconciler.member)


async def _all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines as tasks; on an error or cancellation, cancel the others and wait
    for them, so that every row they were writing is recorded before this returns."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _state_after(error: InveterateError, previous: AdjustmentState) -> AdjustmentState:
    if isinstance(error, RateLimitError):
        return previous  # nothing was done: left for the next run
    if isinstance(error, APIStatusError) and error.status < 500:
        return AdjustmentState.REJECTED
    if getattr(error, "outcome_unknown", True):
        return AdjustmentState.UNKNOWN
    return previous  # it never left


def _echoed_entry_id(result: CreditResult, adjustment: Adjustment) -> str | None:
    """The new entry's id, when the answer echoes the entry (id and the same amount)."""
    data = result.data
    if not isinstance(data, dict):
        return None
    entry_id = data.get("id")
    if isinstance(entry_id, bool) or not isinstance(entry_id, (str, int)):
        return None
    try:
        same = Decimal(str(data.get("amount"))) == adjustment.amount
    except InvalidOperation:
        return None
    return str(entry_id) if same else None
