"""What a :class:`~inveterate_async.testing.Sandbox` holds and the methods that seed and
inspect it, apart from serving: :class:`~inveterate_async.testing.ThreadedSandbox` runs
these on the sandbox's own loop."""

import abc
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from aiohttp import web

from ._faults import Faults
from ._ledger import CursorFactory, Ledgers, credit_from_user, member_key
from ._random_faults import RandomFaults
from ._wire import RecordedRequest
from ._write_faults import RandomWriteFaults


class SandboxState(abc.ABC):
    """A sandbox's ledgers, faults and settings, and its seeding and inspection methods
    (the parameters are :class:`~inveterate_async.testing.Sandbox`'s)."""

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_limit: int = 50,
        cursor_factory: CursorFactory | None = None,
        latency: float = 0.0,
        clock: Callable[[], float] = time.time,
        visibility_delay: float = 0.0,
        record_requests: bool = True,
        members_exist: Callable[[str], bool] | None = None,
    ) -> None:
        if default_limit < 1:
            raise ValueError("default_limit must be at least 1")
        if latency < 0:
            raise ValueError("latency must not be negative")
        if visibility_delay < 0:
            raise ValueError("visibility_delay must not be negative")
        self.api_key = api_key
        self.default_limit = default_limit
        self.cursor_factory = cursor_factory
        self.latency = latency
        self.clock = clock
        self.visibility_delay = visibility_delay
        self.record_requests = record_requests
        self.members_exist = members_exist
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.ServerRunner | None = None
        self._ledgers = Ledgers()
        self._faults = Faults()
        self._random_faults = RandomFaults()
        self._write_faults = RandomWriteFaults()

    @abc.abstractmethod
    async def start(self) -> "SandboxState":
        """Start serving; see :meth:`Sandbox.start`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop serving; see :meth:`Sandbox.close`."""

    @property
    def port(self) -> int:
        """The bound TCP port.

        :raises RuntimeError: if the sandbox was never started.
        """
        if self._port is None:
            raise RuntimeError("Sandbox is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The API root to give the client, e.g. ``http://127.0.0.1:54321/v2.0``.

        :raises RuntimeError: if the sandbox was never started.
        """
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v2.0"

    def reset_stats(self) -> None:
        """Forget recorded requests and restart the :attr:`max_in_flight` high-water mark."""
        self.requests.clear()
        self.max_in_flight = self.in_flight

    def add_credits(
        self,
        customer_id: str | int,
        entries: Iterable[Decimal | str | int | Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """Append entries to a member's ledger; nothing is added if any entry is invalid.

        :param customer_id: the member.
        :param entries: amounts (``Decimal``, ``int`` or decimal ``str``; floats are refused
            as inexact) or mappings with ``amount`` and optional ``note``, ``reason`` (default
            ``"manual adjustment"``) and ``createdAt``. Amounts must be non-zero.
        :returns: copies of the created entries.
        :raises TypeError: for a single credit instead of an iterable, or a wrong type.
        :raises ValueError: for an invalid amount or key, or a balance out of range.
        """
        if isinstance(entries, (str, bytes, Mapping)):
            raise TypeError("entries must be an iterable of credits, not a single credit")
        member = member_key(customer_id)
        credits = [credit_from_user(entry) for entry in entries]
        return [dict(entry) for entry in self._ledgers.append(member, credits)]

    def ledger(self, customer_id: str | int) -> list[dict[str, Any]]:
        """Copies of a member's entries, oldest first (empty for an unknown member).

        Credits still hidden by ``visibility_delay`` are included: this is what the
        server holds, not what a GET shows.
        """
        return self._ledgers.entries(member_key(customer_id))

    def balance(self, customer_id: str | int) -> Decimal:
        """A member's current balance (0 for an unknown member)."""
        return self._ledgers.balance(member_key(customer_id))

    def fail_next(
        self,
        status: int = 500,
        times: int = 1,
        retry_after: float | str | None = None,
        body: bytes | str | Mapping[str, Any] | None = None,
        *,
        method: str | None = None,
        customer_id: str | int | None = None,
        apply: bool = False,
        disconnect: bool = False,
        delay: float = 0.0,
        match: Callable[[RecordedRequest], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with an injected fault.

        Faults queue up in call order. Note that aiohttp's client silently retries an
        idempotent request (GET) once after a disconnect, so a GET needs ``times=2``.

        :param status: the status to answer, 200-599.
        :param times: how many matching requests get the fault.
        :param retry_after: the value of a ``Retry-After`` header, if given.
        :param body: the body; by default a JSON ``{message, data}``. A mapping is sent as
            JSON, ``str`` or ``bytes`` as text/plain.
        :param method: only requests with this method match (None: any).
        :param customer_id: only requests for this member match (None: any).
        :param apply: process the request first (a POST is written), then replace its
            response by the fault.
        :param disconnect: close the connection without an answer.
        :param delay: real seconds to wait (after applying, with ``apply``) before
            answering or disconnecting: a client timeout shorter than this times out.
        :param match: only requests for which it returns True match, e.g.
            ``lambda request: b"gold-42" in request.body``.
        :raises ValueError: if ``status``, ``times`` or ``delay`` is out of range.
        """
        self._faults.add(
            status,
            times,
            retry_after,
            body,
            method=method,
            customer_id=customer_id,
            apply=apply,
            disconnect=disconnect,
            delay=delay,
            match=match,
        )

    def fail_randomly(self, rate: float, *, seed: int = 0, status: int = 503) -> None:
        """Answer each ledger read (GET) with a transient ``status`` with probability ``rate``.

        Seeded: the same requests in the same order fail the same way. Faults queued with
        :meth:`fail_next` come first. Writes are never failed this way (see
        :meth:`fail_writes_randomly`).

        :param rate: from 0 (never; the default) to 1 (always).
        :param seed: the seed of the draws.
        :param status: the status to answer, 500-599.
        :raises ValueError: if ``rate`` or ``status`` is out of range.
        """
        self._random_faults.configure(rate, seed=seed, status=status)

    def fail_writes_randomly(
        self, *, before: float = 0.0, after: float = 0.0, dropped: float = 0.0, seed: int = 0
    ) -> None:
        """Fail shares of the ledger writes (POSTs) in each of the ways a write can fail.

        Each POST draws once from ``random.Random(seed)``: the same POSTs in the same order
        fail the same way. Faults queued with :meth:`fail_next` come first (and draw
        nothing). Each call starts the draws afresh; all shares 0 stops failing.

        :param before: the share (0 to 1) answered 500 without applying the credit.
        :param after: the share applied, then answered 500.
        :param dropped: the share applied, then left without an answer (the connection
            is closed).
        :param seed: the seed of the draws.
        :raises ValueError: if a share is not a number from 0 to 1, or they sum above 1.
        """
        self._write_faults.configure(before=before, after=after, dropped=dropped, seed=seed)

    def seed_members(
        self, count: int, *, credits_per_member: int = 5, seed: int = 0, prefix: str = ""
    ) -> list[str]:
        """Create members with realistic ledgers, the same for the same ``seed``.

        :param count: how many members: ``f"{prefix}1"``, ``f"{prefix}2"``, ...
        :param credits_per_member: the entries added to each member's ledger.
        :param seed: the random seed.
        :param prefix: put before each member number.
        :returns: the member ids.
        """
        return self._ledgers.seed_members(
            count, credits_per_member=credits_per_member, seed=seed, prefix=prefix
        )
