"""The Sandbox as a user's tests use it."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from typing_extensions import assert_type

from inveterate_async import InveterateClient
from inveterate_async.testing import RecordedRequest, Sandbox


async def sandbox_round_trip() -> Decimal:
    async with Sandbox(api_key="sk_test", latency=0.0, default_limit=2) as sandbox:
        assert_type(sandbox, Sandbox)
        assert_type(sandbox.base_url, str)
        sandbox.add_credits("42", ["10.00", Decimal("-2.50"), 3, {"amount": "1.00", "note": "hi"}])
        sandbox.fail_next(503, times=2, retry_after=1, method="GET")
        sandbox.fail_next(500, customer_id=42, apply=True)
        sandbox.fail_next(disconnect=True)
        async with InveterateClient("sk_test", base_url=sandbox.base_url) as client:
            await client.get_credits_page("42")
        request = sandbox.requests[0]
        assert_type(request, RecordedRequest)
        assert_type(request.headers, Mapping[str, str])
        assert_type(request.body, bytes)
        assert_type(request.json(), Any)
        assert_type(sandbox.ledger("42"), list[dict[str, Any]])
        sandbox.reset_stats()
        return sandbox.balance("42")


async def started_by_hand() -> int:
    sandbox = Sandbox()
    await sandbox.start()
    try:
        return sandbox.port
    finally:
        await sandbox.close()
