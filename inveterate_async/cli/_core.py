"""The async work behind the commands, shared by the commands and the demo.

Nothing here prints to the user directly: rows go to writers and counts to trackers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs

from .. import InveterateClient
from ._exits import UsageFailure
from ._output import RowWriter, credit_row
from ._progress import Tracker

if TYPE_CHECKING:  # the sandbox is imported only by the commands that serve it
    from ..testing import Sandbox

SANDBOX_API_KEY = "sandbox-key"
"""The key of the embedded sandbox (a test key, not a secret)."""

NO_KEY_MESSAGE = (
    "no API key: pass --api-key, set INVETERATE_API_KEY, or use --sandbox to try the "
    "embedded sandbox"
)


DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_SANDBOX_MEMBERS = 100


@attrs.frozen
class Settings:
    """The group's global options.

    ``key_in_arguments``: the key was given with ``--api-key`` (not the environment), so a
    command printed for the user to run again needs it added back; ``base_url_in_arguments``:
    ``--base-url`` was given, so such a command repeats it.
    """

    api_key: str | None = attrs.field(default=None, repr=False)
    base_url: str | None = None
    sandbox: bool = False
    sandbox_members: int = DEFAULT_SANDBOX_MEMBERS
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout: float = DEFAULT_TIMEOUT
    key_in_arguments: bool = False
    base_url_in_arguments: bool = False


def require_key(settings: Settings) -> None:
    """:raises UsageFailure: without a key (and without ``--sandbox``)."""
    if not settings.sandbox and not settings.api_key:
        raise UsageFailure(NO_KEY_MESSAGE)


async def start_sandbox(
    *,
    members: int,
    seed: int = 0,
    api_key: str = SANDBOX_API_KEY,
    host: str = "127.0.0.1",
    port: int = 0,
    credits_per_member: int = 5,
    page_size: int = 50,
    latency: float = 0.0,
    fail_rate: float = 0.0,
    record_requests: bool = True,
) -> Sandbox:
    """Start a :class:`Sandbox` with ``members`` seeded members ``"1"``, ``"2"``, ...

    ``fail_rate`` reads fail with a transient 503 (seeded with ``seed``).
    """
    from ..testing import Sandbox

    sandbox = Sandbox(
        api_key=api_key,
        host=host,
        port=port,
        default_limit=page_size,
        latency=latency,
        record_requests=record_requests,
    )
    sandbox.seed_members(members, credits_per_member=credits_per_member, seed=seed)
    sandbox.fail_randomly(fail_rate, seed=seed)
    return await sandbox.start()


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[InveterateClient]:
    """A client for the real API, or for an embedded seeded sandbox with ``--sandbox``."""
    if settings.sandbox:
        sandbox = await start_sandbox(members=settings.sandbox_members)
        try:
            async with InveterateClient(
                SANDBOX_API_KEY,
                base_url=sandbox.base_url,
                max_retries=settings.max_retries,
                timeout=settings.timeout,
            ) as client:
                yield client
        finally:
            await sandbox.close()
        return
    async with InveterateClient(
        settings.api_key,
        base_url=settings.base_url,
        max_retries=settings.max_retries,
        timeout=settings.timeout,
    ) as client:
        yield client


@attrs.define
class LedgerState:
    """How far ``write_ledger`` got: what to resume from if it stops early.

    ``resume`` is the ``next_cursor`` of the last page written completely (or the cursor
    the listing started from); ``more`` is set when ``max_items`` stopped the listing
    exactly at the end of a page that has a successor.
    """

    resume: str | None = None
    printed: int = 0
    pages: int = 0
    more: str | None = None


async def write_ledger(
    client: InveterateClient,
    member_id: str,
    writer: RowWriter,
    state: LedgerState,
    *,
    page_size: int | None = None,
    max_items: int | None = None,
    tracker: Tracker | None = None,
) -> None:
    """Write a member's ledger page by page from ``state.resume``, flushing each page."""
    tracker = tracker or Tracker()
    pages = client.iter_credit_pages(member_id, page_size=page_size, cursor=state.resume)
    try:
        async for page in pages:
            credits = page.credits
            if max_items is not None:
                credits = credits[: max_items - state.printed]
            writer.write_rows([credit_row(credit) for credit in credits])
            writer.flush()
            state.printed += len(credits)
            state.pages += 1
            tracker.update(credits=state.printed, pages=state.pages)
            if len(credits) < len(page.credits):
                return  # max_items reached inside this page
            state.resume = page.next_cursor
            if max_items is not None and state.printed >= max_items:
                state.more = page.next_cursor
                return
    finally:
        await _aclose(pages)


async def _aclose(iterator: object) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
