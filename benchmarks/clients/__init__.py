"""Clients under test: one module per client, each exposing ``fetch(base_url, workload)``.

To add a client, write a module here with an ``async def fetch`` returning a :class:`Tally`
and register its name in :data:`CLIENTS` (and in :data:`FAN_OUT_ONLY` if it only differs in
how it fans out). The first registered client is the baseline that the report's ratios
divide by.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import NamedTuple

from benchmarks._workloads import Workload

CLIENTS = {
    "raw": "benchmarks.clients.raw",
    "sdk": "benchmarks.clients.sdk",
    "sdk-stdlib": "benchmarks.clients.sdk_stdlib",
    "sdk-semaphore": "benchmarks.clients.sdk_semaphore",
}
# Clients that only differ from "sdk" in how they fan out: not run for one member.
FAN_OUT_ONLY = frozenset({"sdk-semaphore"})


class Tally(NamedTuple):
    """What a client fetched: the number of credits, the sum of amounts and how it fanned out."""

    credits: int
    total: Decimal
    via: str


Fetch = Callable[[str, Workload], Awaitable[Tally]]


def clients_for(workload: Workload, clients: list[str]) -> list[str]:
    """The ``clients`` that run ``workload``, in order; the first (the baseline) always does."""
    first, *others = clients
    return [first, *(name for name in others if workload.members > 1 or name not in FAN_OUT_ONLY)]


def load(name: str) -> Fetch:
    """Import client ``name`` (and everything it imports) and return its ``fetch``."""
    fetch: Fetch = importlib.import_module(CLIENTS[name]).fetch
    return fetch


async def run_pool(
    member_ids: Iterable[str],
    concurrency: int,
    fetch_member: Callable[[str], Awaitable[tuple[int, Decimal]]],
) -> tuple[int, Decimal]:
    """Fetch every member with ``concurrency`` workers pulling IDs from one shared iterator."""
    pending = iter(member_ids)

    async def worker() -> tuple[int, Decimal]:
        count, total = 0, Decimal(0)
        for member_id in pending:
            member_count, member_total = await fetch_member(member_id)
            count += member_count
            total += member_total
        return count, total

    results = await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sum(r[0] for r in results), sum((r[1] for r in results), Decimal(0))
