"""Typed views of the API's credit entries and responses."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs


@attrs.frozen(slots=True)
class Credit:
    """One entry of a member's credit ledger.

    ``amount`` and ``new_balance`` are exact :class:`~decimal.Decimal` values;
    ``created_at`` is timezone-aware. ``raw`` is the entry exactly as the API sent
    it, unknown fields included.
    """

    amount: Decimal
    created_at: datetime | None = None
    new_balance: Decimal | None = None
    reason: str | None = None
    note: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(slots=True)
class CreditPage:
    """One page of a ledger and the cursor of the next page (None at the end).

    ``raw`` is the whole response body as received.
    """

    credits: tuple[Credit, ...]
    next_cursor: str | None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(slots=True)
class CreditResult:
    """The API's answer to a write: its ``message`` and ``data``."""

    message: str
    data: Any
