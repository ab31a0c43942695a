"""The client as users write it: context manager, pages, generators, writes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from decimal import Decimal

import aiohttp
from typing_extensions import assert_type

from inveterate_async import Credit, CreditPage, CreditResult, InveterateClient


class AuditedClient(InveterateClient):
    """A user's subclass: ``async with`` must give it back as itself (``Self``)."""

    __slots__ = ()

    def audit_label(self) -> str:
        return f"audit:{self.base_url}"


async def context_manager_keeps_the_subclass() -> str:
    async with AuditedClient("key", base_url="http://127.0.0.1:8080/v2.0") as client:
        assert_type(client, AuditedClient)
        return client.audit_label()


async def plain_client_and_settings(session: aiohttp.ClientSession) -> None:
    async with InveterateClient(
        "key",
        base_url="https://api.example.com/v2.0",
        session=session,
        timeout=aiohttp.ClientTimeout(total=5),
        deadline=30.0,
        max_retries=0,
        backoff_base=0,
        max_connections=4,
    ) as client:
        assert_type(client, InveterateClient)
        assert_type(client.base_url, str)
    InveterateClient(timeout=2.5, deadline=None)
    InveterateClient(timeout="5")  # type: ignore[arg-type]


async def one_page(client: InveterateClient) -> str | None:
    page = await client.get_credits_page(42, limit=10, cursor=None, deadline=5)
    assert_type(page, CreditPage)
    assert_type(page.credits, tuple[Credit, ...])
    first = page.credits[0]
    assert_type(first.amount, Decimal)
    assert_type(first.new_balance, Decimal | None)
    await client.get_credits_page("42", deadline=None)
    return page.next_cursor


async def generators_close_cleanly(client: InveterateClient) -> Decimal:
    credits = client.iter_credits("1", page_size=50)
    assert_type(credits, AsyncGenerator[Credit, None])
    total = Decimal(0)
    async with contextlib.aclosing(client.iter_credits("1")) as stream:
        async for credit in stream:
            assert_type(credit, Credit)
            total += credit.amount
            break
    first = await anext(credits)
    assert_type(first, Credit)
    await credits.aclose()

    pages = client.iter_credit_pages("1", page_size=2, cursor="resume-here")
    assert_type(pages, AsyncGenerator[CreditPage, None])
    async with contextlib.aclosing(pages):
        async for page in pages:
            assert_type(page.next_cursor, str | None)
    await pages.aclose()
    return total


async def writes(client: InveterateClient) -> list[CreditResult]:
    results = [
        await client.create_credit("42", Decimal("10.10"), note="goodwill"),
        await client.create_credit(42, "-5.00", force=True, deadline=10),
        await client.create_credit("42", 3),
    ]
    assert_type(results[0].message, str)
    # A float amount is inexact: refused by the type checker as well as at run time.
    await client.create_credit("42", 0.1)  # type: ignore[arg-type]
    return results
