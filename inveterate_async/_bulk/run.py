"""``apply_credits``: a batch of adjustments sent through a journal, decided by the ledger.

A run: merge the batch into the journal (one transaction); check the key with one read
unless each member's ledger is read before its first send anyway; the send pass (each
member: what its ledger already shows is recorded, the rest sent); the reconciling pass
(rows of uncertain outcome decided from the ledger); and, if allowed, one re-send of the
rows found not applied, reconciled again. Each row is sent at most once per run, plus at
most one re-send.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

from .._errors import InveterateError, JournalError, JournalWriteError
from .adjustments import AdjustmentReport, CreditAdjustment, within_places
from .api import CreditsAPI
from .context import RunContext, each
from .journal import Journal
from .ledger import is_auth_failure, is_missing_member
from .members import Unit, units
from .options import BulkOptions
from .plan import dry_run_report
from .reconcile import EARLIER_NOT_APPLIED, TAGGED, UNTAGGED, reconcile_member
from .send_pass import TO_RESEND, TO_SEND, UNCERTAIN, resend_member, send_member


async def apply_credits(
    api: CreditsAPI,
    adjustments: Iterable[CreditAdjustment],
    journal: str | os.PathLike[str] | Journal,
    options: BulkOptions,
    *,
    dry_run: bool,
) -> AdjustmentReport:
    """Run a batch through a journal (see ``InveterateClient.apply_credits``)."""
    if isinstance(adjustments, (str, bytes, CreditAdjustment)):
        raise ValueError("adjustments must be an iterable of CreditAdjustment")
    if options.max_decimal_places is not None:
        adjustments = within_places(adjustments, options.max_decimal_places)
    if dry_run:
        return await dry_run_report(adjustments, journal, options)
    store = journal if isinstance(journal, Journal) else Journal(journal)
    if store.read_only:
        raise ValueError("a journal opened read_only cannot be applied from")
    opened_here = not store.is_open
    if opened_here:
        await store.open()
    elif store.busy:
        raise JournalError("the journal is in use by another apply_credits call", path=store.path)
    store.busy = True
    try:
        await store._new_run()
        ctx = RunContext(api, store, options)
        try:
            return await _execute(ctx, adjustments)
        except JournalError as error:
            if ctx.may_have_sent and not isinstance(error, JournalWriteError):
                raise JournalWriteError(
                    f"{error}; adjustments were being sent, so some may have been applied: "
                    "fix the cause and run again (rows of unknown outcome are looked up in "
                    "the ledger first)",
                    path=store.path,
                ) from error
            raise
    finally:
        store.busy = False
        if opened_here:
            await store.close()


async def _execute(ctx: RunContext, adjustments: Iterable[CreditAdjustment]) -> AdjustmentReport:
    options = ctx.options
    await ctx.journal._merge(adjustments)
    tagged = options.tag_notes
    if not (tagged and options.check_ledger_first):
        await _check_key(ctx)
    await _pass(ctx, f"({TO_SEND}) OR ({UNCERTAIN})" if tagged else TO_SEND, send_member)
    await _reconcile(ctx)
    if options.resend_unconfirmed:
        await _pass(ctx, TO_RESEND, resend_member)
        await _reconcile(ctx)
    if ctx.stopped_by is not None:
        raise ctx.stopped_by
    return await ctx.journal.report()


async def _pass(
    ctx: RunContext, where: str, work: Callable[[RunContext, Unit], Awaitable[None]]
) -> None:
    if ctx.stopped_by is None:
        await each(units(ctx, where), partial(work, ctx), ctx.options.concurrency)
        # The next pass reads the journal: what this one recorded must be in it. (On an
        # error, closing the journal commits what was queued.)
        await ctx.settle()


async def _reconcile(ctx: RunContext) -> None:
    if not ctx.options.tag_notes:
        where = UNTAGGED
    elif ctx.options.resend_unconfirmed:
        where = f"({TAGGED}) OR ({EARLIER_NOT_APPLIED})"
    else:
        where = TAGGED
    await _pass(ctx, where, reconcile_member)


async def _check_key(ctx: RunContext) -> None:
    """One read before the first write: a wrong key or URL fails here, nothing sent."""
    first = await ctx.journal._by_member(TO_SEND, ("", -1), 1)
    if not first:
        return
    try:
        await ctx.api.get_credits_page(first[0][0].row.adjustment.customer_id, limit=1)
    except InveterateError as error:
        if is_auth_failure(error) or not is_missing_member(error):
            raise
