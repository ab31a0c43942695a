"""The FastAPI app: one SDK client per app, a cursor-paginated listing, and a write.

``uvicorn examples.fastapi_app.app:app`` serves it with the key and API root from
``INVETERATE_API_KEY`` / ``INVETERATE_BASE_URL``; tests build their own with
:func:`create_app`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated, TypedDict

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from pydantic import BaseModel, BeforeValidator, Field

from inveterate_async import Credit, InveterateClient, InveterateError

from .errors import handle_sdk_error

# A web request should not wait through long retry backoffs: 10 s for everything.
REQUEST_DEADLINE = 10.0

# JSON numbers reach pydantic as floats (12345678901234567890.12 would lose digits), so
# money comes in as a decimal string, like "10.10", and is sent on with its exact digits.
_DECIMAL_TEXT = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")


def _decimal_text(value: object) -> Decimal:
    if not isinstance(value, str) or not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError('send the amount as a decimal string, e.g. "10.10"')
    amount = Decimal(value)
    if amount.is_zero():
        raise ValueError("the amount must not be zero")
    return amount


Money = Annotated[Decimal, BeforeValidator(_decimal_text)]


class CreditOut(BaseModel):
    """One ledger entry; amounts are decimal strings with their exact digits."""

    id: str | None
    created_at: datetime | None
    amount: Decimal
    new_balance: Decimal | None
    reason: str | None
    note: str | None

    @classmethod
    def of(cls, credit: Credit) -> CreditOut:
        """The answer's view of an SDK :class:`Credit`."""
        entry_id = credit.raw.get("id")
        return cls(
            id=entry_id if isinstance(entry_id, str) else None,
            created_at=credit.created_at,
            amount=credit.amount,
            new_balance=credit.new_balance,
            reason=credit.reason,
            note=credit.note,
        )


class CreditPageOut(BaseModel):
    """A page of a ledger; pass ``next_cursor`` back as ``?cursor=`` (null: the end)."""

    credits: list[CreditOut]
    next_cursor: str | None


class NewCredit(BaseModel):
    """A credit to add (positive amount) or remove (negative)."""

    amount: Money
    note: str | None = Field(default=None, max_length=500)


class CreatedCredit(BaseModel):
    """The API's answer to a write, and the entry it created when it says."""

    message: str
    credit: CreditOut | None
    request_id: str | None


class AppState(TypedDict):
    """What the lifespan hands to every request (``request.state``)."""

    inveterate: InveterateClient


def inveterate(
    request: Request, x_request_id: Annotated[str | None, Header()] = None
) -> InveterateClient:
    """The app's client; the caller's ``X-Request-ID``, if any, is sent on to the API."""
    client: InveterateClient = request.state.inveterate
    if x_request_id:
        return client.with_options(headers={"X-Request-ID": x_request_id})
    return client


Client = Annotated[InveterateClient, Depends(inveterate)]

router = APIRouter()


@router.get("/members/{member_id}/credits")
async def list_credits(
    member_id: str,
    client: Client,
    cursor: Annotated[str | None, Query(min_length=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CreditPageOut:
    """One page of a member's ledger, oldest first."""
    page = await client.get_credits_page(
        member_id, limit=limit, cursor=cursor, deadline=REQUEST_DEADLINE
    )
    return CreditPageOut(
        credits=[CreditOut.of(credit) for credit in page.credits], next_cursor=page.next_cursor
    )


@router.post("/members/{member_id}/credits", status_code=201)
async def add_credit(member_id: str, new: NewCredit, client: Client) -> CreatedCredit:
    """Add store credit; never retried once it may have reached the API."""
    result = await client.create_credit(
        member_id, new.amount, note=new.note, deadline=REQUEST_DEADLINE
    )
    return CreatedCredit(
        message=result.message,
        credit=None if result.credit is None else CreditOut.of(result.credit),
        request_id=result.request_id,
    )


def create_app(make_client: Callable[[], InveterateClient] = InveterateClient) -> FastAPI:
    """The app, with ``make_client()`` called once at startup for its one client.

    :param make_client: builds the client (default: key and API root from the environment).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AppState]:
        # One client (one connection pool) for the app's life, in the app's event loop;
        # closed on shutdown.
        async with make_client() as client:
            yield {"inveterate": client}

    app = FastAPI(title="Credits service", lifespan=lifespan)
    app.add_exception_handler(InveterateError, handle_sdk_error)
    app.include_router(router)
    return app


app = create_app()
