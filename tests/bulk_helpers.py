"""Shared by the bulk-adjustment tests: a deterministic world, and counting the ledger."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import attrs

from inveterate_async import CreditAdjustment, InveterateClient
from inveterate_async.testing import ManualClock, Sandbox

from .conftest import API_KEY

TAG = re.compile(r"\[ref:(?P<ref>[^\]]+)\]$")


@attrs.frozen
class World:
    """A sandbox, a client and a clock they share: settle windows and delayed visibility
    play out in no real time, the same way every run."""

    sandbox: Sandbox
    client: InveterateClient
    clock: ManualClock


@asynccontextmanager
async def world(
    *, visibility_delay: float = 0.0, timeout: float = 30.0, max_retries: int = 0
) -> AsyncIterator[World]:
    """A started sandbox and a client on one :class:`ManualClock`."""
    clock = ManualClock()
    async with (
        Sandbox(api_key=API_KEY, clock=clock, visibility_delay=visibility_delay) as sandbox,
        InveterateClient(
            API_KEY,
            base_url=sandbox.base_url,
            sleep=clock.sleep,
            backoff_base=0,
            max_retries=max_retries,
            timeout=timeout,
        ) as client,
    ):
        yield World(sandbox, client, clock)


def api_entries(sandbox: Sandbox, members: Iterable[str]) -> list[dict[str, Any]]:
    """Every credit written through the API (not seeded), in the order they were written."""
    entries = [e for m in members for e in sandbox.ledger(m) if e["reason"] == "api"]
    return sorted(entries, key=lambda entry: str(entry["id"]))


def content(member: str, amount: Decimal, note: str | None) -> tuple[str, Decimal, str]:
    """How a credit is compared with an adjustment: member, amount value, note."""
    return (member, amount.normalize(), note or "")


def written(sandbox: Sandbox, members: Iterable[str]) -> Counter[tuple[str, Decimal, str]]:
    """How many API credits each (member, amount, note) has in the sandbox."""
    return Counter(
        content(member, entry["amount"], entry["note"])
        for member in set(members)
        for entry in sandbox.ledger(member)
        if entry["reason"] == "api"
    )


def wanted(adjustments: Iterable[CreditAdjustment], *, tagged: bool) -> Counter[Any]:
    """The credits a batch should leave, as :func:`written` counts them."""
    return Counter(
        content(a.customer_id, a.amount, a.tagged_note() if tagged else a.note) for a in adjustments
    )


def refs_written(sandbox: Sandbox, members: Iterable[str]) -> Counter[str]:
    """How many credits carry each ``[ref:...]`` marker."""
    counts: Counter[str] = Counter()
    for member in set(members):
        for entry in sandbox.ledger(member):
            match = TAG.search(entry["note"] or "")
            if match:
                counts[match["ref"]] += 1
    return counts


def body_of(adjustment: CreditAdjustment, *, tagged: bool) -> Mapping[str, Any]:
    """The JSON body the SDK sends for an adjustment, as the sandbox parses it."""
    body: dict[str, Any] = {"amount": adjustment.amount}
    note = adjustment.tagged_note() if tagged else adjustment.note
    if note is not None:
        body["note"] = note
    if adjustment.force is not None:
        body["force"] = adjustment.force
    return body
