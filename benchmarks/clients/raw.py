"""Hand-written aiohttp loop: the floor any client's overhead is measured against."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

import aiohttp
from yarl import URL

from benchmarks._workloads import API_KEY, API_KEY_HEADER, Workload
from benchmarks.clients import Tally, run_pool


async def fetch(base_url: str, workload: Workload) -> Tally:
    """Follow ``lastCreditEntry`` for every member; sum amounts as ``Decimal(str(x))``."""
    # aiohttp's default pool (100 connections), or one connection per worker if more.
    connector = aiohttp.TCPConnector(limit=max(100, workload.concurrency))
    async with aiohttp.ClientSession(
        headers={API_KEY_HEADER: API_KEY}, connector=connector
    ) as session:

        async def member_credits(member_id: str) -> tuple[int, Decimal]:
            prefix = (
                f"{base_url}/admin/members/{quote(member_id, safe='')}/credits"
                f"?limit={workload.page_size}"
            )
            url = URL(prefix, encoded=True)
            count, total = 0, Decimal(0)
            for _ in range(workload.pages_per_member + 1):
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    data = (await resp.json())["data"]
                credits = data["credits"]
                count += len(credits)
                for credit in credits:
                    total += Decimal(str(credit["amount"]))
                cursor = data["lastCreditEntry"]
                if cursor is None:
                    return count, total
                url = URL(f"{prefix}&lastCreditEntry={quote(cursor, safe='')}", encoded=True)
            raise RuntimeError(f"member {member_id}: cursor chain longer than expected")

        count, total = await run_pool(workload.member_ids(), workload.concurrency, member_credits)
    return Tally(count, total, f"{workload.concurrency} worker(s)")
