"""An in-process fake of the Inveterate credits API, served by a real aiohttp server.

The sandbox deliberately imports nothing from the rest of ``inveterate_async``: it has its
own JSON, URL and money handling, so a bug in the client cannot be mirrored (and hidden) by
the server it is tested against.
"""

import asyncio
import decimal
import json
import random
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType, TracebackType
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["RecordedRequest", "Sandbox"]

CursorFactory = Callable[[str, Mapping[str, Any]], str | Mapping[str, Any]]

_API_KEY_HEADER = "X-Inveterate-Api-Key"
# Matched on the raw path: the id is one percent-encoded segment. A raw "." or ".." is a dot
# segment that real servers and proxies resolve, so it must arrive encoded (%2E) to be an id.
_CREDITS_PATH = re.compile(r"/v2\.0/admin/members/(?!\.\.?/)([^/?]+)/credits(?:\?.*)?", re.DOTALL)
_LIMIT = re.compile(r"[0-9]+")
# Larger limits are equivalent to "everything"; capping the digits avoids int() DoS limits.
_MAX_LIMIT_DIGITS = 18
_CLOCK_START = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
# Balances are exact sums; an amount that would force rounding is rejected instead.
_MONEY = decimal.Context(prec=50, traps=[decimal.Inexact, decimal.InvalidOperation])
_CREDIT_KEYS = frozenset({"amount", "note", "reason", "createdAt"})
_DTO_KEYS = frozenset({"amount", "note", "force"})

_SEED_GRANTS = ("5.00", "10.00", "12.50", "25.00", "7.75", "15.00", "3.99")
_SEED_REDEMPTIONS = ("2.50", "5.00", "10.00", "0.99")
_SEED_GRANT_REASONS = ("purchase reward", "goodwill", "manual adjustment", "birthday bonus")
_SEED_NOTES = (
    "Thanks for shopping with us",
    "Merci — fidélité",
    "Geburtstagsgrüße 🎂",
    "Order #1001/A & more",
    "顧客サービス",
)


@attrs.frozen
class RecordedRequest:
    """One request as received by the sandbox, exactly as it came over the wire.

    ``raw_path`` is the undecoded path and query. ``customer_id`` is the decoded member id
    segment (None if the path is not the credits endpoint), ``query`` the raw query string
    decoded with :func:`urllib.parse.parse_qs` and ``cursor`` the decoded ``lastCreditEntry``.
    """

    method: str
    raw_path: str
    customer_id: str | None
    query: Mapping[str, list[str]]
    cursor: str | None
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """Parse the body as JSON, with non-integer numbers as :class:`~decimal.Decimal`."""
        return json.loads(self.body, parse_float=Decimal)


@attrs.frozen
class _Credit:
    amount: Decimal
    reason: str
    note: str | None
    created_at: str | None = None


@attrs.define
class _Fault:
    status: int
    remaining: int
    headers: dict[str, str]
    body: bytes
    method: str | None
    customer_id: str | None
    apply: bool
    disconnect: bool

    def matches(self, request: RecordedRequest) -> bool:
        return (self.method is None or self.method == request.method) and (
            self.customer_id is None or self.customer_id == request.customer_id
        )


class _BadRequest(Exception):
    """A request the API would reject with 400; the message is sent to the client."""


class Sandbox:
    """A fake Inveterate API server on localhost for testing code that uses the SDK.

    Serves ``GET`` and ``POST /v2.0/admin/members/{id}/credits`` from in-memory ledgers,
    checks the ``X-Inveterate-Api-Key`` header against ``api_key``, paginates with opaque
    ``lastCreditEntry`` cursors and records every request in :attr:`requests`. The member id
    must arrive as one percent-encoded path segment (``"a/b"`` as ``a%2Fb``, ``".."`` as
    ``%2E%2E``); other paths get 404 and other methods 405.

    Args:
        api_key: The only key accepted; anything else is answered with 400.
        host: Interface to bind; only localhost by default.
        port: TCP port; 0 picks a free one.
        default_limit: Page size when a GET has no ``limit``.
        cursor_factory: ``(customer_id, entry) -> cursor`` replacing the default cursor.
            A ``str`` is sent as a JSON string and must come back verbatim; a mapping of
            JSON-native values is sent as a JSON object and must come back as its compact
            ``json.dumps(obj, separators=(",", ":"))`` text.
        latency: Seconds every request waits (while counted in :attr:`in_flight`).

    Example::

        async with Sandbox(api_key="test-key") as sandbox:
            sandbox.add_credits("42", ["10.00", "-2.50"])
            async with InveterateClient("test-key", base_url=sandbox.base_url) as client:
                ...
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_limit: int = 50,
        cursor_factory: CursorFactory | None = None,
        latency: float = 0.0,
    ) -> None:
        if default_limit < 1:
            raise ValueError("default_limit must be at least 1")
        if latency < 0:
            raise ValueError("latency must not be negative")
        self.api_key = api_key
        self.default_limit = default_limit
        self.cursor_factory = cursor_factory
        self.latency = latency
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.ServerRunner | None = None
        self._ledgers: dict[str, list[dict[str, Any]]] = {}
        # Per member: cursor text issued by this sandbox -> index of its entry in the ledger.
        self._cursors: dict[str, dict[str, int]] = {}
        self._faults: list[_Fault] = []
        self._entry_count = 0

    async def start(self) -> "Sandbox":
        """Start serving; returns ``self``."""
        if self._runner is not None:
            raise RuntimeError("Sandbox is already started")
        # A short grace period: requests still waiting out `latency` are cancelled on close.
        runner = web.ServerRunner(web.Server(self._handle, access_log=None), shutdown_timeout=0.1)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._runner = runner
        return self

    async def close(self) -> None:
        """Stop serving and close all connections; safe to call more than once."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> "Sandbox":
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._port is None:
            raise RuntimeError("Sandbox is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """API root to give the client, e.g. ``http://127.0.0.1:54321/v2.0``."""
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
        """Append entries to a member's ledger and return copies of the created entries.

        Each entry is an amount (``Decimal``, ``int`` or decimal ``str``; floats are refused
        as inexact) or a mapping with ``amount`` and optional ``note``, ``reason`` (default
        ``"manual adjustment"``) and ``createdAt``. Amounts must be non-zero. Nothing is
        added if any entry is invalid.
        """
        if isinstance(entries, (str, bytes, Mapping)):
            raise TypeError("entries must be an iterable of credits, not a single credit")
        member = _member_key(customer_id)
        credits = [_credit_from_user(entry) for entry in entries]
        return [dict(entry) for entry in self._append(member, credits)]

    def ledger(self, customer_id: str | int) -> list[dict[str, Any]]:
        """Copies of a member's entries, oldest first (empty for an unknown member)."""
        return [dict(entry) for entry in self._ledgers.get(_member_key(customer_id), [])]

    def balance(self, customer_id: str | int) -> Decimal:
        """A member's current balance (0 for an unknown member)."""
        ledger = self._ledgers.get(_member_key(customer_id))
        return ledger[-1]["newBalance"] if ledger else Decimal(0)

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
    ) -> None:
        """Answer the next ``times`` matching requests with an injected fault.

        A request matches if its ``method`` and ``customer_id`` equal the given ones (None
        matches anything). The fault answers ``status`` with ``body`` (default a JSON
        ``{message, data}``; a mapping is sent as JSON, ``str``/``bytes`` as text/plain) and a
        ``Retry-After`` header if ``retry_after`` is given. With ``apply=True`` the request is
        processed first (a POST is written) and its response replaced by the fault. With
        ``disconnect=True`` the connection is closed without an answer.

        Faults queue up in call order. Note that aiohttp's client silently retries an
        idempotent request (GET) once after a disconnect, so a GET needs ``times=2``.
        """
        if not 200 <= status <= 599:
            raise ValueError("status must be between 200 and 599")
        if times < 1:
            raise ValueError("times must be at least 1")
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if body is None:
            body = {"message": f"Injected failure (HTTP {status})", "data": {}}
        if isinstance(body, Mapping):
            headers["Content-Type"] = "application/json; charset=utf-8"
            payload = _encode_json(body).encode()
        else:
            headers["Content-Type"] = "text/plain; charset=utf-8"
            payload = body.encode() if isinstance(body, str) else bytes(body)
        self._faults.append(
            _Fault(
                status=status,
                remaining=times,
                headers=headers,
                body=payload,
                method=None if method is None else method.upper(),
                customer_id=None if customer_id is None else _member_key(customer_id),
                apply=apply,
                disconnect=disconnect,
            )
        )

    def seed_members(
        self, count: int, *, credits_per_member: int = 5, seed: int = 0, prefix: str = ""
    ) -> list[str]:
        """Create ``count`` members ``f"{prefix}1"``, ``f"{prefix}2"``, ... with realistic,
        deterministic (per ``seed``) ledgers of ``credits_per_member`` entries; returns the ids.
        """
        rng = random.Random(seed)
        ids = [f"{prefix}{n}" for n in range(1, count + 1)]
        for member in ids:
            balance = self.balance(member)
            credits = []
            for _ in range(credits_per_member):
                note = rng.choice(_SEED_NOTES) if rng.random() < 0.3 else None
                if balance > 0 and rng.random() < 0.3:
                    wanted = Decimal(rng.choice(_SEED_REDEMPTIONS))
                    credit = _Credit(-min(wanted, balance), "redemption", note)
                else:
                    amount = Decimal(rng.choice(_SEED_GRANTS))
                    credit = _Credit(amount, rng.choice(_SEED_GRANT_REASONS), note)
                balance += credit.amount
                credits.append(credit)
            self._append(member, credits)
        return ids

    def _append(self, member: str, credits: list[_Credit]) -> list[dict[str, Any]]:
        """Build all entries first so that a failure leaves the ledger untouched."""
        ledger = self._ledgers.setdefault(member, [])
        balance = ledger[-1]["newBalance"] if ledger else Decimal(0)
        created = []
        for number, credit in enumerate(credits, start=self._entry_count + 1):
            try:
                balance = _MONEY.add(balance, credit.amount)
            except decimal.DecimalException:
                raise ValueError("amount is out of range") from None
            created_at = _CLOCK_START + timedelta(minutes=number - 1)
            created.append(
                {
                    "id": f"cr_{number:06d}",
                    "amount": credit.amount,
                    "createdAt": credit.created_at
                    or created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "newBalance": balance,
                    "reason": credit.reason,
                    "note": credit.note,
                }
            )
        self._entry_count += len(created)
        ledger.extend(created)
        return created

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            recorded = _record(request, await request.read())
            self.requests.append(recorded)
            # Taken on arrival so that concurrent requests get faults in arrival order.
            fault = self._take_fault(recorded)
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            if fault is None:
                return self._dispatch(recorded)
            if fault.apply:
                # Only the side effect is wanted: the fault replaces the answer.
                self._dispatch(recorded)
            if fault.disconnect and request.transport is not None:
                # aiohttp treats the failed write of the response as a client disconnect.
                request.transport.close()
            return web.Response(status=fault.status, body=fault.body, headers=fault.headers)
        finally:
            self.in_flight -= 1

    def _take_fault(self, request: RecordedRequest) -> _Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.matches(request):
                fault.remaining -= 1
                if fault.remaining == 0:
                    del self._faults[index]
                return fault
        return None

    def _dispatch(self, request: RecordedRequest) -> web.Response:
        if request.customer_id is None:
            return _json_response(404, "Not found", {})
        if request.method not in ("GET", "POST"):
            return _json_response(405, "Method not allowed", {}, {"Allow": "GET, POST"})
        if request.headers.get(_API_KEY_HEADER) != self.api_key:
            return _json_response(400, "Invalid API key", {})
        try:
            if request.method == "GET":
                return self._get_credits(request.customer_id, request.query)
            return self._create_credit(request.customer_id, request)
        except _BadRequest as exc:
            return _json_response(400, str(exc), {})

    def _get_credits(self, member: str, query: Mapping[str, list[str]]) -> web.Response:
        for name, values in query.items():
            if len(values) > 1:
                raise _BadRequest(f"Query parameter {name} is repeated")
        limit = _parse_limit(query["limit"][0]) if "limit" in query else self.default_limit
        ledger = self._ledgers.get(member, [])
        start = 0
        if "lastCreditEntry" in query:
            index = self._cursors.get(member, {}).get(query["lastCreditEntry"][0])
            if index is None:
                raise _BadRequest("Invalid lastCreditEntry")
            start = index + 1
        page = ledger[start : start + limit]
        end = start + len(page)
        cursor = self._issue_cursor(member, ledger, end - 1) if end < len(ledger) else None
        data = {"credits": page, "lastCreditEntry": cursor}
        return _json_response(200, "Credits retrieved", data)

    def _issue_cursor(
        self, member: str, ledger: list[dict[str, Any]], index: int
    ) -> str | Mapping[str, Any]:
        entry = ledger[index]
        cursor: str | Mapping[str, Any]
        if self.cursor_factory is None:
            created_at: str = entry["createdAt"]
            if created_at.endswith("Z"):
                created_at = created_at[:-1] + "+00:00"
            sort_key = f"{created_at}#{entry['id']}"
            cursor = _compact_json({"pk": f"member#{member}", "sk": sort_key})
        else:
            cursor = self.cursor_factory(member, dict(entry))
        text = cursor if isinstance(cursor, str) else _compact_json(dict(cursor))
        self._cursors.setdefault(member, {})[text] = index
        return cursor

    def _create_credit(self, member: str, request: RecordedRequest) -> web.Response:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _BadRequest("Content-Type must be application/json")
        try:
            payload = json.loads(
                request.body.decode("utf-8"),
                parse_float=Decimal,
                parse_int=Decimal,
                parse_constant=_reject_constant,
            )
        except ValueError:  # also UnicodeDecodeError and JSONDecodeError
            raise _BadRequest("Body is not valid JSON") from None
        credit = _credit_from_dto(payload)
        try:
            (entry,) = self._append(member, [credit])
        except ValueError as exc:
            raise _BadRequest(str(exc)) from None
        return _json_response(201, "Credit created", entry)


def _member_key(customer_id: str | int) -> str:
    if isinstance(customer_id, bool) or not isinstance(customer_id, (str, int)):
        raise TypeError("customer_id must be a str or an int")
    member = str(customer_id)
    if not member:
        raise ValueError("customer_id must not be empty")
    return member


def _to_amount(value: object) -> Decimal:
    if isinstance(value, (bool, float)):
        raise TypeError(f"amount must be a Decimal, int or decimal str, not {value!r}")
    if isinstance(value, (int, str)):
        try:
            value = Decimal(value)
        except decimal.InvalidOperation:
            raise ValueError(f"amount is not a decimal number: {value!r}") from None
    if not isinstance(value, Decimal):
        raise TypeError(f"amount must be a Decimal, int or decimal str, not {value!r}")
    if not value.is_finite() or value == 0:
        raise ValueError(f"amount must be finite and non-zero, not {value}")
    return value


def _optional_str(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a str")
    return value


def _credit_from_user(entry: Decimal | str | int | Mapping[str, Any]) -> _Credit:
    if not isinstance(entry, Mapping):
        return _Credit(_to_amount(entry), "manual adjustment", None)
    unknown = set(entry) - _CREDIT_KEYS
    if unknown:
        raise ValueError(f"unknown credit keys: {sorted(unknown)}")
    if "amount" not in entry:
        raise ValueError("a credit mapping needs an 'amount'")
    return _Credit(
        amount=_to_amount(entry["amount"]),
        reason=_optional_str(entry, "reason") or "manual adjustment",
        note=_optional_str(entry, "note"),
        created_at=_optional_str(entry, "createdAt"),
    )


def _credit_from_dto(payload: object) -> _Credit:
    """Validate a POST body against CreditDto; every violation is a 400."""
    if not isinstance(payload, dict):
        raise _BadRequest("Body must be a JSON object")
    unknown = set(payload) - _DTO_KEYS
    if unknown:
        raise _BadRequest(f"Unknown properties: {', '.join(sorted(unknown))}")
    if "amount" not in payload:
        raise _BadRequest("amount is required")
    amount = payload["amount"]
    if not isinstance(amount, Decimal):
        raise _BadRequest("amount must be a number")
    if amount == 0:
        raise _BadRequest("amount can't be zero")
    note = payload.get("note")
    if "note" in payload and not isinstance(note, str):
        raise _BadRequest("note must be a string")
    if "force" in payload and not isinstance(payload["force"], bool):
        raise _BadRequest("force must be a boolean")
    return _Credit(amount, "api", note)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _parse_limit(text: str) -> int:
    digits = text.lstrip("0")
    if not _LIMIT.fullmatch(text) or not digits:
        raise _BadRequest("limit must be a positive integer")
    return int(digits) if len(digits) <= _MAX_LIMIT_DIGITS else 10**_MAX_LIMIT_DIGITS


def _record(request: web.BaseRequest, body: bytes) -> RecordedRequest:
    raw_path = request.raw_path
    match = _CREDITS_PATH.fullmatch(raw_path)
    query = parse_qs(urlsplit(raw_path).query, keep_blank_values=True)
    cursors = query.get("lastCreditEntry")
    return RecordedRequest(
        method=request.method,
        raw_path=raw_path,
        customer_id=unquote(match.group(1)) if match else None,
        query=MappingProxyType(query),
        cursor=cursors[0] if cursors else None,
        headers=CIMultiDictProxy(CIMultiDict(request.headers)),
        body=body,
    )


def _compact_json(value: dict[str, Any]) -> str:
    """The cursor text form: what ``json.dumps`` gives without whitespace."""
    return json.dumps(value, separators=(",", ":"))


def _encode_json(value: object) -> str:
    """Serialize to JSON text, writing Decimals with their exact digits."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot encode {value} as JSON")
        return str(value)
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be str, not {key!r}")
            items.append(f"{json.dumps(key, ensure_ascii=False)}:{_encode_json(item)}")
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_encode_json(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _json_response(
    status: int, message: str, data: object, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=_encode_json({"message": message, "data": data}).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )
