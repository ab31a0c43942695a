"""Exporting many members' ledgers in the order of their ids, with checkpoints.

Members are read ``concurrency`` at a time (``iter_credits_many(...).events()``) but
written one after the other in the order of the ids, each member's rows together in
ledger order: an export's output is the same however often it was stopped and resumed.

The member being written (the *head*) streams into a partial file page by page; the
pages of the members read ahead wait in a :class:`Spool` until their turn, and no more
than a window of members is read ahead. A checkpoint (every quarter second and when the
export stops) records the output's complete length and the head's position.

A member that fails has none of its rows in the output. A failure that every member
would share (the key refused, the API unreachable) is held back rather than final: if
the fan-out then stops for it (``abort_after``), resuming retries that member in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import suppress

from .._client import InveterateClient
from .._models import LedgerPage, LedgerPosition, MemberFinished
from .._streaming.failfast import shared_cause
from .errors import ExportError, ExportStateError, failed_write, ids_changed
from .member import Member, Status
from .report import ExportProgress, Tally
from .rows import PageEncoder
from .spool import Spool
from .state import Checkpoint, ExportFailure, chain_digest
from .target import Sink

CHECKPOINT_SECONDS = 0.25
MIN_WINDOW = 64
WINDOW_PER_WORKER = 8


class OrderedExport:
    """One run of an export, from ``start`` (a saved checkpoint, or the beginning).

    :param sink: where rows and checkpoints go.
    :param encode: turns a page of one member's credits into text (CSV or JSON Lines).
    :param start: where to begin; its offset must be the sink's current length.
    :param report: filled in as the export goes (also when it stops early).
    :param on_progress: called with the counts after each page and member.
    """

    def __init__(
        self,
        sink: Sink,
        encode: PageEncoder,
        *,
        start: Checkpoint,
        report: Tally,
        on_progress: Callable[[ExportProgress], None] | None = None,
    ) -> None:
        self._sink = sink
        self._encode = encode
        self._start = start
        self._report = report
        self._on_progress = on_progress
        self._spool = Spool()
        self._head = start.head
        self._next_index = start.head
        self._offset = start.offset
        self._digest = start.ids_digest
        self._by_index: dict[int, Member] = {}
        self._by_id: dict[str, Member] = {}
        self._held: list[Member] = []
        self._held_cause: str | None = None
        self._new_failures: list[ExportFailure] = []
        self._room = asyncio.Event()
        self._window = MIN_WINDOW
        self._last_save = 0.0
        report.rows, report.members_done = start.rows, start.members_done
        if start.head_id is not None:  # added now: a checkpoint taken at once keeps its rows
            head = Member(start.head, start.head_id, start.head_position, written=start.head_rows)
            self._add(head).start = start.head_start

    async def run(
        self,
        client: InveterateClient,
        member_ids: AsyncIterator[str],
        *,
        concurrency: int,
        page_size: int | None,
        abort_after: int | None,
    ) -> None:
        """Read and write every member after the start.

        :raises ExportStateError: if resuming with other ids than the saved export's.
        :raises StreamAbortedError: when members keep failing for a shared cause.
        :raises ExportOutputError: when the output cannot be written (no checkpoint is
            saved then: the last one stays valid).
        """
        self._window = max(MIN_WINDOW, WINDOW_PER_WORKER * concurrency)
        self._last_save = asyncio.get_running_loop().time()
        self._track()
        try:
            await self._skip_written(member_ids)
            stream = client.iter_credits_many(
                self._members(member_ids),
                concurrency=concurrency,
                page_size=page_size,
                on_error="collect",
                abort_after=abort_after,
            )
            async with stream:
                async for event in stream.events():
                    if isinstance(event, LedgerPage):
                        self._on_page(event)
                    else:
                        self._on_finished(event)
                    self._track()
                    self._save_every(CHECKPOINT_SECONDS)
            self._release_held()
            self._advance()
            if self._by_index:
                # Every member handed out ends with a MemberFinished: never finish without one.
                raise RuntimeError(f"the export lost track of {len(self._by_index)} members")
            self._sink.flush()
            self._save()
        except BaseException as exc:
            # After a failed write the output may be half-written, and KeyboardInterrupt or
            # SystemExit may have come between two steps of the bookkeeping: then the last
            # checkpoint saved stays the one to resume from.
            if not (failed_write(exc) or isinstance(exc, (KeyboardInterrupt, SystemExit))):
                self._save_on_stop()
            raise
        finally:
            self._spool.close()
            self._track()

    async def _skip_written(self, member_ids: AsyncIterator[str]) -> None:
        """Read past the ids before the head, checking they are the saved export's."""
        digest = ""
        for _ in range(self._start.head):
            member_id = await anext(member_ids, None)
            if member_id is None:
                raise self._ids_changed("there are fewer ids than in the interrupted export")
            digest = chain_digest(digest, member_id)
        if digest != self._start.ids_digest:
            raise self._ids_changed("the ids are not those of the interrupted export")

    async def _members(
        self, member_ids: AsyncIterator[str]
    ) -> AsyncIterator[tuple[str, LedgerPosition]]:
        """The fan-out's members, each with its start, never too far ahead of the head."""
        async for member_id in member_ids:
            index = self._next_index
            while not (index < self._head + self._window or self._head_is_held()):
                self._room.clear()
                await self._room.wait()
            member = self._by_index.get(index)
            if member is None:
                member = self._add(Member(index, member_id))
            elif member.member_id != member_id:
                raise self._ids_changed(f"id {index + 1} is no longer {member.member_id!r}")
            self._next_index += 1
            if index == self._head and not member.written:
                self._promote(member)
            yield member_id, member.position
        if self._start.head_id is not None and self._next_index == self._start.head:
            raise self._ids_changed(f"{self._start.head_id!r} is missing from the ids")

    def _ids_changed(self, reason: str) -> ExportStateError:
        return ids_changed("" if self._sink.state is None else self._sink.state.path, reason)

    def _add(self, member: Member) -> Member:
        self._by_index[member.index] = member
        self._by_id[member.member_id] = member
        return member

    def _head_is_held(self) -> bool:
        head = self._by_index.get(self._head)
        return head is not None and head.status is Status.HELD

    def _on_page(self, event: LedgerPage) -> None:
        member = self._by_id[str(event.customer_id)]
        credits = event.credits
        data = self._encode(member.member_id, credits).encode()
        if member.index == self._head and self._sink.streams_head:
            self._write(member, data, len(credits), event.position)
        else:
            self._spool.add(member.index, data)
            member.spooled.append((len(credits), event.position))

    def _on_finished(self, event: MemberFinished) -> None:
        member = self._by_id[str(event.customer_id)]
        error = event.error
        cause = None if error is None else shared_cause(error)
        if cause is None or cause != self._held_cause:
            self._release_held()  # the run of shared failures is over: they are final
        if error is None:
            member.status = Status.DONE
        else:
            member.error = f"{type(error).__name__}: {error}"
            if cause is None:
                member.status = Status.FAILED
            else:
                member.status = Status.HELD
                self._held.append(member)
                self._held_cause = cause
                self._room.set()
        self._advance()

    def _release_held(self) -> None:
        for member in self._held:
            if member.status is Status.HELD:
                member.status = Status.FAILED
        self._held.clear()
        self._held_cause = None

    def _advance(self) -> None:
        """Move the head past every member that is done or failed for good."""
        while (member := self._by_index.get(self._head)) is not None:
            if member.status is Status.DONE:
                self._flush(member)
                self._report.members_done += 1
                if not self._sink.streams_head:
                    self._sink.flush()  # a reader of stdout gets each member when it is done
            elif member.status is Status.FAILED:
                failure = ExportFailure(member.index, member.member_id, member.error)
                self._new_failures.append(failure)
                self._report.failures.append(failure)
                self._spool.discard(member.index)
            else:
                return
            del self._by_index[member.index], self._by_id[member.member_id]
            self._digest = chain_digest(self._digest, member.member_id)
            self._head += 1
            self._room.set()
            if member.written and member.status is Status.FAILED:
                self._cut(member)
            following = self._by_index.get(self._head)
            if following is not None:
                self._promote(following)

    def _cut(self, member: Member) -> None:
        """Remove a failed head's rows: the checkpoint says so first, so that a crash in
        between resumes without them."""
        self._offset = member.start
        self._report.rows -= member.written
        self._save()
        self._sink.truncate(member.start)

    def _promote(self, member: Member) -> None:
        """``member`` becomes the head: its rows so far go out (if it streams)."""
        member.start = self._offset
        if self._sink.streams_head and member.status is not Status.FAILED:
            self._flush(member)

    def _flush(self, member: Member) -> None:
        # Page by page, so that what a checkpoint says always matches the bytes written.
        pages, member.spooled = member.spooled, []
        for data, (rows, position) in zip(self._spool.pop(member.index), pages, strict=True):
            self._write(member, data, rows, position)

    def _write(self, member: Member, data: bytes, rows: int, position: LedgerPosition) -> None:
        self._sink.write(data)
        self._offset += len(data)
        self._report.rows += rows
        member.written += rows
        member.position = position

    def _checkpoint(self) -> Checkpoint:
        head = self._by_index.get(self._head)
        if head is None or not head.written:  # nothing of it in the output yet
            head = Member(self._head, "", start=self._offset)
        return Checkpoint(
            head=self._head,
            head_id=head.member_id or None,
            head_position=head.position,
            head_start=head.start,
            head_rows=head.written,
            offset=self._offset,
            rows=self._report.rows,
            members_done=self._report.members_done,
            ids_digest=self._digest,
        )

    def _save(self) -> None:
        if not self._sink.saves:
            return
        checkpoint = self._checkpoint()
        self._sink.save(checkpoint, self._new_failures)
        self._new_failures.clear()
        self._report.saved = checkpoint
        self._last_save = asyncio.get_running_loop().time()

    def _save_every(self, seconds: float) -> None:
        if asyncio.get_running_loop().time() - self._last_save >= seconds:
            self._save()

    def _save_on_stop(self) -> None:
        # Stopped at an await (a signal's cancellation, a fan-out abort, bad ids): the output
        # and the bookkeeping agree, so the checkpoint can be brought up to date. If that
        # fails, the last one still holds.
        with suppress(ExportError):
            self._save()

    def _track(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self._report.progress(self._head))
