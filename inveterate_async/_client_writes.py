"""The client's writes: one credit, and a batch through a journal (the bulk layer's
entry point, to which ``apply_credits`` delegates; ``_bulk`` never imports the client)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Protocol

from ._bulk import (
    AdjustmentReport,
    AdjustmentRow,
    BulkOptions,
    CreditAdjustment,
    CreditsAPI,
    Journal,
)
from ._bulk import apply_credits as run_batch
from ._config import UNSET, Unset
from ._http.caller import Caller
from ._http.request import create_credit_request
from ._http.response import read_credit_result
from ._models import CreditResult
from ._streaming.members import CustomerId


class _Client(CreditsAPI, Protocol):
    """What ``apply_credits`` needs of the client it is part of."""

    @property
    def _caller(self) -> Caller: ...


class CreditWrites:
    """``create_credit`` and ``apply_credits`` of :class:`InveterateClient`."""

    __slots__ = ()
    _base_url: str
    _caller: Caller

    async def create_credit(
        self,
        customer_id: CustomerId,
        amount: int | Decimal | str,
        *,
        note: str | None = None,
        force: bool | None = None,
        deadline: float | Unset | None = UNSET,
    ) -> CreditResult:
        """Add (positive ``amount``) or remove (negative) store credit for a member.

        :param amount: a ``Decimal``, a decimal ``str`` or an ``int``, sent with its
            exact digits; a ``float`` is refused (``0.1 + 0.2`` is not 0.3).
        :param note: a note stored with the credit.
        :param force: with a negative amount, disable active credit redemption codes.
        :param deadline: seconds for this call, overriding the client's.
        :raises InveterateError: never retried once it may have reached the server: when
            ``outcome_unknown`` is set, check the ledger before trying again.
        """
        request = create_credit_request(self._base_url, customer_id, amount, note=note, force=force)
        return await self._caller.call(request, read_credit_result, deadline)

    async def apply_credits(
        self: _Client,
        adjustments: Iterable[CreditAdjustment],
        journal: str | os.PathLike[str] | Journal,
        *,
        concurrency: int = 8,
        tag_notes: bool = True,
        check_ledger_first: bool | None = None,
        settle: float = 300.0,
        clock_skew: float = 120.0,
        poll_interval: float | None = None,
        resend_unconfirmed: bool = False,
        max_decimal_places: int | None = None,
        dry_run: bool = False,
        on_progress: Callable[[AdjustmentRow], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> AdjustmentReport:
        """Apply a batch of adjustments exactly once, through a SQLite journal.

        The member's ledger is the truth: each note carries its ref's tag, a member's
        ledger is read before its first send (a ref already there is recorded applied,
        not sent), and every uncertain outcome is looked up there. Re-running with the
        same journal resumes; a lost or second journal applies nothing twice once the
        earlier writes are visible. See docs/bulk.md for the guarantees and their limits.

        :param adjustments: the batch, any iterable (a generator over a large file is
            read a chunk at a time); every ``ref`` once.
        :param journal: the journal file (created if missing), or a :class:`Journal`.
        :param concurrency: members worked on, and so requests, at the same time.
        :param tag_notes: append ``" [ref:REF]"`` to each note, so that the ledger says
            which adjustment made each entry. ``False`` matches entries by amount, note
            and time instead: a weaker guarantee (docs/bulk.md).
        :param check_ledger_first: read a member's ledger before its first send (default:
            with ``tag_notes``); ``False`` for a batch you know is new saves one read per
            member. Needs ``tag_notes``.
        :param settle: seconds after a send within which its credit must show in the
            ledger; a row of unknown outcome unseen in two reads, the last after that
            (on ``clock``), is "not applied".
        :param clock_skew: without tags, seconds an entry's ``createdAt`` may precede
            the send.
        :param poll_interval: seconds between ledger reads while waiting (default:
            ``settle / 10``, at most 10).
        :param resend_unconfirmed: re-send rows found not applied (once per run).
        :param max_decimal_places: refuse (ValueError, nothing sent) an amount with more
            decimal places, e.g. ``2`` to catch ``5.005`` typos (None: any).
        :param dry_run: write and send nothing; the report's ``to_send`` is what would be
            sent, and ``on_progress`` is called with each such row.
        :param on_progress: called with each row whenever its state changes.
        :param clock: the monotonic clock of settle windows (tests pass a
            ``ManualClock``); waits use the client's ``sleep``.
        :returns: counts and sums per state over the whole journal, and the first rows
            that are not applied.
        :raises ValueError: for a bad argument or item, or a ref given twice; nothing
            is sent.
        :raises JournalConflictError: a ref is in the journal with other content.
        :raises JournalLockedError: another process is applying from the journal.
        :raises JournalWriteError: the journal could not be written after POSTs went
            out (a full disk): run again once the cause is fixed.
        :raises AuthenticationError: (or another error whose ``is_auth_error`` is
            True) the API refused the key; the run stopped, unsent rows stay pending,
            and a re-run with the right key finishes the batch.
        :raises InveterateError: the key check failed (wrong URL); the journal is
            consistent and a re-run resumes.
        """
        options = BulkOptions.checked(
            concurrency=concurrency,
            tag_notes=tag_notes,
            check_ledger_first=check_ledger_first,
            settle=settle,
            clock_skew=clock_skew,
            poll_interval=poll_interval,
            resend_unconfirmed=resend_unconfirmed,
            max_decimal_places=max_decimal_places,
            on_progress=on_progress,
            clock=clock,
            sleep=self._caller.sleep,
        )
        self._caller.reserve_connections(concurrency)
        return await run_batch(self, adjustments, journal, options, dry_run=dry_run)
