"""Faults injected with :meth:`Sandbox.fail_next`, waiting for the requests they answer.

:func:`build_fault` also makes the faults that :mod:`._write_faults` draws at random.
"""

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._ledger import member_key
from ._wire import RecordedRequest, encode_json


@attrs.define
class Fault:
    """An injected answer and how many more matching requests get it."""

    status: int
    remaining: int
    headers: dict[str, str]
    body: bytes
    method: str | None
    customer_id: str | None
    apply: bool
    disconnect: bool
    delay: float = 0.0
    match: Callable[[RecordedRequest], bool] | None = None

    def matches(self, request: RecordedRequest) -> bool:
        """Whether the request has this fault's method, member and ``match`` (None: any)."""
        return (
            (self.method is None or self.method == request.method)
            and (self.customer_id is None or self.customer_id == request.customer_id)
            and (self.match is None or self.match(request))
        )


def build_fault(
    status: int,
    times: int,
    retry_after: float | str | None,
    body: bytes | str | Mapping[str, Any] | None,
    *,
    method: str | None,
    customer_id: str | int | None,
    apply: bool,
    disconnect: bool,
    delay: float = 0.0,
    match: Callable[[RecordedRequest], bool] | None = None,
) -> Fault:
    """A fault from the arguments of :meth:`Sandbox.fail_next`.

    :raises ValueError: if ``status`` is not 200-599, ``times`` is below 1 or
        ``delay`` is negative.
    """
    if not 200 <= status <= 599:
        raise ValueError("status must be between 200 and 599")
    if times < 1:
        raise ValueError("times must be at least 1")
    if delay < 0:
        raise ValueError("delay must not be negative")
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if body is None:
        body = {"message": f"Injected failure (HTTP {status})", "data": {}}
    if isinstance(body, Mapping):
        headers["Content-Type"] = "application/json; charset=utf-8"
        payload = encode_json(body).encode()
    else:
        headers["Content-Type"] = "text/plain; charset=utf-8"
        payload = body.encode() if isinstance(body, str) else bytes(body)
    return Fault(
        status=status,
        remaining=times,
        headers=headers,
        body=payload,
        method=None if method is None else method.upper(),
        customer_id=None if customer_id is None else member_key(customer_id),
        apply=apply,
        disconnect=disconnect,
        delay=delay,
        match=match,
    )


class Faults:
    """Injected faults in the order they were added."""

    def __init__(self) -> None:
        self._queue: list[Fault] = []

    def add(
        self,
        status: int,
        times: int,
        retry_after: float | str | None,
        body: bytes | str | Mapping[str, Any] | None,
        *,
        method: str | None,
        customer_id: str | int | None,
        apply: bool,
        disconnect: bool,
        delay: float = 0.0,
        match: Callable[[RecordedRequest], bool] | None = None,
    ) -> None:
        """Queue a fault; the arguments are those of :meth:`Sandbox.fail_next`.

        :raises ValueError: as :func:`build_fault`.
        """
        self._queue.append(
            build_fault(
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
        )

    def take(self, request: RecordedRequest) -> Fault | None:
        """The first fault matching the request, used up once; None if there is none."""
        for index, fault in enumerate(self._queue):
            if fault.matches(request):
                fault.remaining -= 1
                if fault.remaining == 0:
                    del self._queue[index]
                return fault
        return None
