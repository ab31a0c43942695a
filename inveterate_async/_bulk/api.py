"""The three calls a bulk run makes, as a protocol: the bulk layer needs no client class."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Protocol

from .._models import Credit, CreditPage, CreditResult


class CreditsAPI(Protocol):
    """What ``apply_credits`` uses of :class:`~inveterate_async.InveterateClient`."""

    async def get_credits_page(self, customer_id: str, *, limit: int | None = None) -> CreditPage:
        """One page of a member's ledger (the key check before the first write)."""
        ...

    def iter_credits(self, customer_id: str) -> AsyncIterator[Credit]:
        """Every credit of a member's ledger."""
        ...

    async def create_credit(
        self, customer_id: str, amount: Decimal, *, note: str | None, force: bool | None
    ) -> CreditResult:
        """Add or remove one credit."""
        ...
