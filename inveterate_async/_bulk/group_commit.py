"""Group commit: row updates queued while a commit is under way are committed together,
in one transaction (one fsync for many rows), in the order they were queued."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class GroupCommit:
    """Commits queued updates, a batch at a time, through ``commit`` (one transaction
    per batch: each update's result, or its error)."""

    def __init__(self, commit: Callable[[list[Callable[[], Any]]], Awaitable[list[Any]]]) -> None:
        self._commit = commit
        self._queued: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self.committer: asyncio.Task[None] | None = None  # the task committing them

    def queue(self, update: Callable[[], T]) -> asyncio.Future[T]:
        """Queue ``update`` for the next commit: its future is done once that is durable
        (cancelling the future does not withdraw the update)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        # A caller cancelled meanwhile never reads the outcome: it is read here instead.
        future.add_done_callback(_retrieve)
        self._queued.append((update, future))
        if self.committer is None or self.committer.done():
            self.committer = asyncio.ensure_future(self._commit_queued())
            self.committer.add_done_callback(self.drop_queued)
        return future

    async def finished(self) -> None:
        """Wait until everything queued so far is committed (or has failed)."""
        if self.committer is not None:
            await asyncio.wait([self.committer])

    def drop_queued(self, committer: asyncio.Task[None]) -> None:
        """The committer's done-callback."""
        # A committer cancelled (the loop shutting down) leaves no caller waiting forever.
        # One that ended normally drops nothing: what was queued since then is the next
        # committer's, already started or about to be.
        if not committer.cancelled() or committer is not self.committer:
            return
        queued, self._queued = self._queued, []
        for _, future in queued:
            future.cancel()

    async def _commit_queued(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                updates = [update for update, _ in batch]
                results = await self._commit(updates)
            except asyncio.CancelledError:  # the loop is shutting down
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # the commit itself failed: every update with it
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # its caller was cancelled: committed all the same
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
