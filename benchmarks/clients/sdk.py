"""The inveterate_async SDK as ``pip install`` gives it (msgspec included), called the way
its documentation shows."""

from __future__ import annotations

from decimal import Decimal

from benchmarks._workloads import API_KEY, Workload
from benchmarks.clients import Tally
from inveterate_async import InveterateClient


async def fetch(base_url: str, workload: Workload) -> Tally:
    """Sum ``credit.amount`` over every credit: iter_credits, or iter_credits_many to fan out."""
    count, total = 0, Decimal(0)
    async with InveterateClient(API_KEY, base_url=base_url, max_retries=0) as client:
        if workload.members == 1:
            (member_id,) = workload.member_ids()
            async for credit in client.iter_credits(member_id, page_size=workload.page_size):
                count += 1
                total += credit.amount
            return Tally(count, total, "iter_credits")
        async for _member_id, credit in client.iter_credits_many(
            workload.member_ids(), concurrency=workload.concurrency, page_size=workload.page_size
        ):
            count += 1
            total += credit.amount
    return Tally(count, total, "iter_credits_many")
