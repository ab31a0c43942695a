"""The inveterate_async SDK, called the way its documentation shows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from benchmarks._workloads import API_KEY, Workload
from benchmarks.clients import Tally, run_pool
from inveterate_async import InveterateClient


async def fetch(base_url: str, workload: Workload) -> Tally:
    """Sum ``credit.amount`` over every credit; fan out with ``iter_credits_many`` if present."""
    async with InveterateClient(API_KEY, base_url=base_url, max_retries=0) as client:
        iter_many: Any = getattr(client, "iter_credits_many", None)
        if workload.members > 1 and iter_many is not None:
            count, total = 0, Decimal(0)
            async for _member_id, credit in iter_many(
                workload.member_ids(),
                concurrency=workload.concurrency,
                page_size=workload.page_size,
            ):
                count += 1
                total += credit.amount
            return Tally(count, total, "iter_credits_many")

        async def member_credits(member_id: str) -> tuple[int, Decimal]:
            count, total = 0, Decimal(0)
            async for credit in client.iter_credits(member_id, page_size=workload.page_size):
                count += 1
                total += credit.amount
            return count, total

        count, total = await run_pool(workload.member_ids(), workload.concurrency, member_credits)
    return Tally(count, total, f"iter_credits, {workload.concurrency} worker(s)")
