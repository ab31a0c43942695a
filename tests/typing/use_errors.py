"""Catching the SDK's errors and reading what they carry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from multidict import CIMultiDictProxy
from typing_extensions import assert_type

from inveterate_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    InvalidResponseError,
    InveterateClient,
    InveterateError,
    MemberError,
    PaginationError,
    RateLimitError,
    ServerError,
)


async def write_once(client: InveterateClient) -> str:
    try:
        await client.create_credit("42", Decimal("25.00"), note="refund")
    except RateLimitError as exc:
        assert_type(exc.retry_after, float | None)
        return "later"
    except ServerError as exc:
        assert_type(exc.outcome_unknown, bool)
        return "check the ledger" if exc.outcome_unknown else "failed"
    except APIStatusError as exc:
        assert_type(exc.status, int)
        assert_type(exc.message, str)
        assert_type(exc.data, Any)
        assert_type(exc.body, bytes)
        assert_type(exc.headers, CIMultiDictProxy[str])
        assert_type(exc.headers.getall("Warning"), list[str])
        assert_type(exc.headers.get("Retry-After"), str | None)
        assert_type(exc.request_id, str | None)
        return f"HTTP {exc.status} ({exc.request_id}): {exc.message}"
    except APITimeoutError as exc:
        assert_type(exc.outcome_unknown, bool)
        return "timed out"
    except APIConnectionError as exc:
        assert_type(exc.outcome_unknown, bool)
        assert_type(exc.method, str)
        assert_type(exc.url, str)
        return "network"
    except PaginationError as exc:
        assert_type(exc, PaginationError)
        return "loop"
    except InvalidResponseError as exc:
        assert_type(exc.outcome_unknown, bool)
        assert_type(exc.status, int | None)
        assert_type(exc.body, bytes)
        assert_type(exc.request_id, str | None)
        return "unreadable"
    return "ok"


async def any_error(client: InveterateClient) -> None:
    try:
        await client.get_credits_page("42")
    except InveterateError as exc:
        assert_type(str(exc), str)
        if isinstance(exc, (ServerError, APIConnectionError, InvalidResponseError)):
            assert_type(exc.outcome_unknown, bool)
        raise


def member_error(exc: MemberError) -> Exception:
    assert_type(exc.customer_id, str | int)
    assert_type(exc.cursor, str | None)
    return exc.error
