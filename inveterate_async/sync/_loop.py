"""A private event loop in a daemon thread, and running coroutines on it from any thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """One event loop, served by its own daemon thread until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    @property
    def running(self) -> bool:
        """Whether the loop still serves (False once stopped)."""
        return self._thread.is_alive() and not self._loop.is_closed()

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run the coroutine ``make()`` on the loop and wait for its result here.

        An interruption of the waiting thread (Ctrl-C: ``KeyboardInterrupt``) cancels the
        coroutine, waits for it to unwind, and is raised.

        :raises RuntimeError: called from the loop's own thread, or after :meth:`stop`.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("a blocking client cannot be used from its own callbacks")
        if not self.running:
            raise RuntimeError("the client is closed")
        started, unwound = threading.Event(), threading.Event()

        async def guarded() -> T:
            started.set()
            try:
                return await make()
            finally:
                unwound.set()

        future = asyncio.run_coroutine_threadsafe(guarded(), self._loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                future.cancel()
                if started.is_set():
                    unwound.wait()  # the request unwinds (its connection released) first
            raise

    def iterate(self, items: AsyncIterator[T], close: bool = True) -> Generator[T, None, None]:
        """``items`` as a plain iterator; leaving it early (``break``, an error, the
        iterator dropped) closes ``items`` on the loop, when ``close`` is set."""
        try:
            while True:
                try:
                    yield self.run(lambda: _next(items))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(items, "aclose", None)
            if close and aclose is not None and self.running:
                self.run(aclose)

    def stop(self) -> None:
        """Stop the loop and wait for its thread to end; safe to call more than once."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()


async def _next(items: AsyncIterator[T]) -> T:
    return await items.__anext__()
