"""A :class:`Sandbox` served from an event loop of its own, in a daemon thread.

For tests that are not async, or whose code under test runs its own event loop
(FastAPI's ``TestClient``, Django's test client, ``requests``): a sandbox started in the
test's loop is never served while that loop is blocked waiting for the app.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from ._state import SandboxState
from ._wire import RecordedRequest

P = ParamSpec("P")
R = TypeVar("R")


def _on_sandbox_loop(
    method: Callable[Concatenate[SandboxState, P], R],
) -> Callable[Concatenate[ThreadedSandbox, P], R]:
    """The ``Sandbox`` method ``method``, run on the sandbox's thread and loop."""

    @functools.wraps(method)
    def marshalled(self: ThreadedSandbox, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.call(method, self.sandbox, *args, **kwargs)

    return marshalled


class ThreadedSandbox:
    """A running :class:`Sandbox` served by its own event loop in a daemon thread.

    Made by :meth:`Sandbox.start_in_thread`. Its methods can be called from any thread
    (and from inside any other event loop): they run on the sandbox's loop and wait for
    the result. Use it as a context manager, or call :meth:`close`::

        with Sandbox(api_key="test-key").start_in_thread() as sandbox:
            sandbox.add_credits("42", ["10.00"])
            ...  # point any HTTP client at sandbox.base_url

    The seeding and inspection methods (:meth:`add_credits`, :meth:`seed_members`,
    :meth:`fail_next`, :meth:`fail_writes_randomly`, :meth:`ledger`, :meth:`balance`,
    :meth:`reset_stats`) are the :class:`Sandbox`'s own; for anything else, use
    :meth:`call`.

    :ivar sandbox: the :class:`Sandbox` being served. Touch it only through
        :meth:`call`: it belongs to the sandbox's thread.
    """

    def __init__(self, sandbox: SandboxState) -> None:
        self.sandbox = sandbox
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="inveterate-sandbox", daemon=True)

    def __repr__(self) -> str:
        if self._thread.is_alive() and self._startup_error is None and self._ready.is_set():
            return f"<ThreadedSandbox running at {self.base_url}>"
        return "<ThreadedSandbox not running>"

    def start(self) -> ThreadedSandbox:
        """Start the thread and the sandbox; return once it accepts connections.

        :returns: ``self``.
        :raises RuntimeError: if it was started before.
        :raises OSError: if the address cannot be bound.
        """
        if self._thread.ident is not None:
            raise RuntimeError("ThreadedSandbox is already started")
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        return self

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.sandbox.start()
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.sandbox.close()

    def close(self) -> None:
        """Stop the sandbox and its thread, and wait for them; safe to call twice."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> ThreadedSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @overload
    def call(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R: ...

    @overload
    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def call(self, fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run ``fn(*args, **kwargs)`` on the sandbox's loop and return its result.

        A coroutine function's result is awaited there. Exceptions are raised here.
        For example ``sandbox.call(setattr, sandbox.sandbox, "latency", 0.5)``.

        :raises RuntimeError: if the sandbox is not running, or when called from the
            sandbox's own thread (it would wait for itself).
        """
        loop = self._loop
        if loop is None or not self._thread.is_alive():
            raise RuntimeError("the sandbox thread is not running")
        if threading.current_thread() is self._thread:
            raise RuntimeError("ThreadedSandbox.call cannot be used from the sandbox's thread")
        return asyncio.run_coroutine_threadsafe(_invoke(fn, args, kwargs), loop).result()

    @property
    def base_url(self) -> str:
        """The API root to give the client, e.g. ``http://127.0.0.1:54321/v2.0``."""
        return self.sandbox.base_url

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self.sandbox.port

    @property
    def api_key(self) -> str:
        """The only key the sandbox accepts."""
        return self.sandbox.api_key

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, in arrival order."""
        return self.call(list, self.sandbox.requests)

    add_credits = _on_sandbox_loop(SandboxState.add_credits)
    seed_members = _on_sandbox_loop(SandboxState.seed_members)
    fail_next = _on_sandbox_loop(SandboxState.fail_next)
    fail_writes_randomly = _on_sandbox_loop(SandboxState.fail_writes_randomly)
    ledger = _on_sandbox_loop(SandboxState.ledger)
    balance = _on_sandbox_loop(SandboxState.balance)
    reset_stats = _on_sandbox_loop(SandboxState.reset_stats)


async def _invoke(fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result
