"""The SDK fanned out by hand: one task per member, a semaphore around ``iter_credits``.

The pattern users write beside ``iter_credits_many``; the pool is sized to the semaphore.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from benchmarks._workloads import API_KEY, Workload
from benchmarks.clients import Tally
from inveterate_async import InveterateClient


async def fetch(base_url: str, workload: Workload) -> Tally:
    """Sum ``credit.amount`` over every member's credits, ``concurrency`` members at a time."""
    semaphore = asyncio.Semaphore(workload.concurrency)
    async with InveterateClient(
        API_KEY, base_url=base_url, max_retries=0, max_connections=workload.concurrency
    ) as client:

        async def member_credits(member_id: str) -> tuple[int, Decimal]:
            count, total = 0, Decimal(0)
            async with semaphore:
                async for credit in client.iter_credits(member_id, page_size=workload.page_size):
                    count += 1
                    total += credit.amount
            return count, total

        results = await asyncio.gather(*map(member_credits, workload.member_ids()))
    count = sum(result[0] for result in results)
    total = sum((result[1] for result in results), Decimal(0))
    return Tally(count, total, f"Semaphore({workload.concurrency}) + iter_credits")
