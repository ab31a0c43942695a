"""The Sandbox served from a thread, as synchronous tests use it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from typing_extensions import assert_type

from inveterate_async.testing import RecordedRequest, Sandbox, ThreadedSandbox


def seeded_from_a_sync_test() -> Decimal:
    with Sandbox(api_key="sk_test").start_in_thread() as sandbox:
        assert_type(sandbox, ThreadedSandbox)
        assert_type(sandbox.base_url, str)
        assert_type(sandbox.port, int)
        assert_type(sandbox.add_credits("42", ["10.00", Decimal("1")]), list[dict[str, Any]])
        assert_type(sandbox.seed_members(3, prefix="m"), list[str])
        sandbox.fail_next(503, retry_after=1, method="GET")
        sandbox.fail_next(bogus=True)  # type: ignore[call-arg]
        sandbox.add_credits("42", [0.5])  # type: ignore[list-item]
        assert_type(sandbox.requests, list[RecordedRequest])
        assert_type(sandbox.ledger("42"), list[dict[str, Any]])
        assert_type(sandbox.call(len, "abc"), int)
        assert_type(sandbox.call(sandbox.sandbox.close), None)
        sandbox.reset_stats()
        return sandbox.balance("42")
