"""The blocking client: the async client's results, as plain values and iterators."""

from __future__ import annotations

from collections.abc import Generator
from decimal import Decimal

from typing_extensions import assert_type

from inveterate_async import (
    AdjustmentReport,
    Credit,
    CreditAdjustment,
    CreditPage,
    CreditResult,
    LedgerPage,
    MemberFailure,
    MemberFinished,
)
from inveterate_async.sync import CreditStream, InveterateClient


def use(client: InveterateClient) -> None:
    assert_type(client.get_credits_page("42", limit=10), CreditPage)
    assert_type(client.iter_credits("42"), Generator[Credit, None, None])
    assert_type(client.iter_credit_pages("42"), Generator[CreditPage, None, None])
    assert_type(client.create_credit("42", Decimal("5.00"), note="x"), CreditResult)
    batch = [CreditAdjustment("gold:1", "42", "5.00")]
    assert_type(client.apply_credits(batch, "j.sqlite"), AdjustmentReport)
    assert_type(client.with_options(max_retries=0), InveterateClient)
    with client.iter_credits_many(["1", 2]) as stream:
        assert_type(stream, CreditStream)
        for customer_id, credit in stream:
            assert_type(customer_id, str | int)
            assert_type(credit, Credit)
        for event in stream.events():
            assert_type(event, LedgerPage | MemberFinished)
    assert_type(stream.failures, list[MemberFailure])


def main() -> None:
    with InveterateClient("key") as client:
        use(client)
