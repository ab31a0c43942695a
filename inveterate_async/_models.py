"""Typed views of the API's credit entries and responses."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import attrs

from ._exchange import NO_HEADERS, Headers, request_id
from ._redact import elided


@attrs.frozen(slots=True)
class Credit:
    """One entry of a member's credit ledger.

    ``amount`` and ``new_balance`` are exact :class:`~decimal.Decimal` values;
    ``created_at`` is timezone-aware; ``id`` is the entry's id (None when the API sent
    none). ``raw`` is the entry exactly as the API sent it, unknown fields included.
    """

    amount: Decimal
    created_at: datetime | None = None
    new_balance: Decimal | None = None
    reason: str | None = None
    note: str | None = None
    id: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(slots=True)
class LedgerPosition:
    """Where the reading of a member's ledger stands: a checkpoint to resume from.

    Three states, never confused: :attr:`START` (nothing read yet), ``after(cursor)``
    (resume after the page that gave ``cursor``) and :attr:`FINISHED` (the last page was
    read: resuming reads nothing). Store it with :meth:`to_json` / :meth:`from_json`.
    """

    cursor: str | None = attrs.field(default=None, repr=elided)
    done: bool = False

    START: ClassVar[LedgerPosition]
    FINISHED: ClassVar[LedgerPosition]

    def __attrs_post_init__(self) -> None:
        if self.done and self.cursor is not None:
            raise ValueError("a finished position has no cursor")
        if self.cursor is not None and (not isinstance(self.cursor, str) or not self.cursor):
            raise ValueError(f"cursor must be a non-empty str or None, got {self.cursor!r}")

    @classmethod
    def after(cls, cursor: str) -> LedgerPosition:
        """The position after the page whose ``next_cursor`` is ``cursor``."""
        if not isinstance(cursor, str) or not cursor:
            raise ValueError(f"cursor must be a non-empty str, got {cursor!r}")
        return cls(cursor, False)

    def to_json(self) -> str:
        """Compact JSON text, e.g. ``{"cursor":"abc","done":false}``."""
        return json.dumps({"cursor": self.cursor, "done": self.done}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LedgerPosition:
        """The position :meth:`to_json` wrote.

        :raises ValueError: if ``text`` is not such a position.
        """
        try:
            value = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a ledger position: {text!r}") from exc
        if not isinstance(value, dict) or set(value) != {"cursor", "done"}:
            raise ValueError(f"not a ledger position: {text!r}")
        if not isinstance(value["done"], bool):
            raise ValueError(f"not a ledger position: {text!r}")
        return cls(value["cursor"], value["done"])


LedgerPosition.START = LedgerPosition()
LedgerPosition.FINISHED = LedgerPosition(None, True)


@attrs.frozen(slots=True)
class CreditPage:
    """One page of a ledger and the cursor of the next page (None at the end).

    ``raw`` is the whole response body as received.
    """

    credits: tuple[Credit, ...]
    next_cursor: str | None = attrs.field(repr=elided)
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)
    #: The HTTP status of the response.
    status: int = attrs.field(default=200, eq=False)
    #: The response headers (case-insensitive, scrubbed of the key).
    headers: Headers = attrs.field(default=NO_HEADERS, repr=False, eq=False)

    @property
    def request_id(self) -> str | None:
        """The server's or CDN's id of the request (``x-request-id`` ...), or None."""
        return request_id(self.headers)

    @property
    def is_last(self) -> bool:
        """Whether this is the ledger's last page."""
        return self.next_cursor is None

    @property
    def position(self) -> LedgerPosition:
        """Where the ledger stands after this page: resume from here after a crash."""
        return position_after(self.next_cursor)


def position_after(next_cursor: str | None) -> LedgerPosition:
    """The position after a page whose ``next_cursor`` is given (None: the last page)."""
    if next_cursor is None:
        return LedgerPosition.FINISHED
    return LedgerPosition(next_cursor, False)


@attrs.frozen(slots=True)
class CreditResult:
    """The API's answer to a write: its ``message`` and ``data``.

    ``credit`` is a typed view of the created entry when ``data`` is one (amount as
    ``Decimal``), else None; ``data`` keeps everything the API sent.
    """

    message: str
    data: Any
    #: The HTTP status of the response (201 from the API).
    status: int = attrs.field(default=201, eq=False)
    #: The response headers (case-insensitive, scrubbed of the key).
    headers: Headers = attrs.field(default=NO_HEADERS, repr=False, eq=False)
    credit: Credit | None = attrs.field(default=None, eq=False)

    @property
    def request_id(self) -> str | None:
        """The server's or CDN's id of the request (``x-request-id`` ...), or None."""
        return request_id(self.headers)


@attrs.frozen(slots=True)
class MemberFailure:
    """A member whose ledger could not be read to the end.

    ``cursor`` is where to resume that member (None: from the start); the credits
    before it were delivered.
    """

    customer_id: str | int
    error: Exception
    cursor: str | None = attrs.field(repr=elided)

    @property
    def position(self) -> LedgerPosition:
        """Where to resume this member: after the last page delivered."""
        return LedgerPosition.START if self.cursor is None else LedgerPosition(self.cursor)


@attrs.frozen(slots=True)
class LedgerPage:
    """Event of :meth:`CreditStream.events`: one page of a member's ledger was read.

    Write its ``credits`` first, then record ``position``: a worker that crashes between
    the two re-reads this page, never skips one.
    """

    customer_id: str | int
    page: CreditPage

    @property
    def credits(self) -> tuple[Credit, ...]:
        """The page's credits, in ledger order."""
        return self.page.credits

    @property
    def position(self) -> LedgerPosition:
        """Where this member's ledger stands after the page."""
        return self.page.position


@attrs.frozen(slots=True)
class MemberFinished:
    """Event of :meth:`CreditStream.events`: a member is done, read to the end or failed.

    ``position`` is :attr:`LedgerPosition.FINISHED` on success; after a failure
    (``error`` set) it is where to resume that member.
    """

    customer_id: str | int
    position: LedgerPosition
    error: Exception | None = None
