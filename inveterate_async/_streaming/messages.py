"""What a stream's workers and its consumer pass each other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs

from .._models import CreditPage, LedgerPage, LedgerPosition, MemberFinished
from .members import CustomerId


@attrs.frozen(slots=True)
class PageRead:
    """What a worker learns of its page once the consumer has taken it."""

    next_cursor: str | None


HandOver = Callable[[Callable[[], CreditPage]], Awaitable[PageRead]]
"""How a worker hands a response over: it passes the function that reads it and gets
the page's cursor back (or the read's error raised) once the consumer has taken it."""
PageSource = Callable[[CustomerId, LedgerPosition, HandOver], AsyncIterator[PageRead]]
Event = LedgerPage | MemberFinished


@attrs.frozen(slots=True)
class HandedOver:
    """A response a worker hands over unread, and where the consumer answers it."""

    customer_id: CustomerId
    read: Callable[[], CreditPage]
    outcome: asyncio.Future[PageRead | Exception]


@attrs.frozen(slots=True)
class WorkerCrashed:
    """A worker failed outside any member's read: the stream fails with it."""

    error: Exception


@attrs.frozen(slots=True)
class Aborted:
    """The fail-fast rule tripped: the stream stops with ``error`` for ``cause``."""

    cause: str
    error: Exception


WORKER_DONE = object()  # a worker found no member left
