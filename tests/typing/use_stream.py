"""Fan-out over many members with iter_credits_many and CreditStream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from typing_extensions import assert_type

from inveterate_async import Credit, CreditStream, InveterateClient, MemberFailure


async def ids_from_a_database() -> AsyncIterator[int]:
    for customer_id in range(10):
        yield customer_id


async def collect(client: InveterateClient) -> list[MemberFailure]:
    async with client.iter_credits_many(["1", 2, "3"], concurrency=4, on_error="collect") as stream:
        assert_type(stream, CreditStream)
        async for customer_id, credit in stream:
            assert_type(customer_id, str | int)
            assert_type(credit, Credit)
    assert_type(stream.members_done, int)
    for failure in stream.failures:
        assert_type(failure.customer_id, str | int)
        assert_type(failure.error, Exception)
        assert_type(failure.cursor, str | None)
    return stream.failures


async def raise_and_close(client: InveterateClient) -> int:
    stream = client.iter_credits_many(ids_from_a_database(), page_size=100)
    count = 0
    try:
        async for _customer_id, _credit in stream:
            count += 1
    finally:
        await stream.aclose()
    client.iter_credits_many([1], on_error="ignore")  # type: ignore[arg-type]
    return count
