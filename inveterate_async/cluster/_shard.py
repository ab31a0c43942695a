"""The shard job: export one shard of members to one file, resuming after any failure.

A run reads the members that are not finished, each from its position in the shard's
journal, for at most a time slice; the pages go to the journal. Once every member is read
to the end, the rows are written to a temporary file that is renamed into place: a shard
file is whole or absent. A member that failed for a transient reason is read again by a
later run (queued with arq's ``Retry``), from where it stopped.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
from arq import Retry

from .. import InveterateClient
from .._errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    StreamAbortedError,
)
from .._export.rows import export_line
from .._models import LedgerPage
from ._files import count_lines, write_atomically
from ._journal import ShardJournal, remove_journal
from ._settings import MAX_STALLED_RUNS, SLICE_FRACTION

T = TypeVar("T")

# Failures that another try cannot fix: the shard fails and says who and why.
_PERMANENT = (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    ValueError,
)
_MAX_RETRY_DELAY = 30
# A transaction per page would cost more than the page; a crash re-reads at most these.
_COMMIT_PAGES = 64
_COMMIT_SECONDS = 0.25
_LISTED_FAILURES = 5


class ShardFailed(Exception):
    """A shard that cannot be finished without a change (its journal is kept).

    Raised for member failures another try cannot fix (a refused key, an unknown member),
    or after :data:`MAX_STALLED_RUNS` runs in a row read nothing.
    """


@attrs.frozen
class ShardSpec:
    """What a shard job is given: everything but the API key, as JSON.

    :ivar export_id: the export the shard belongs to.
    :ivar shard: its number, from 0.
    :ivar out: the output folder, the same path on every worker (shared storage).
    :ivar members: its member ids, in order, without duplicates.
    :ivar page_size: credits per request (None: the API's default).
    """

    export_id: str
    shard: int
    out: str
    members: tuple[str, ...]
    page_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The job's argument: a JSON object."""
        return {
            "export": self.export_id,
            "shard": self.shard,
            "out": self.out,
            "members": list(self.members),
            "page_size": self.page_size,
        }

    @classmethod
    def from_json(cls, value: object) -> ShardSpec:
        """The spec :meth:`to_json` wrote.

        :raises ValueError: if ``value`` is not such a spec.
        """
        if not isinstance(value, Mapping) or set(value) != {
            "export",
            "shard",
            "out",
            "members",
            "page_size",
        }:
            raise ValueError("not a shard spec")
        members, page_size = value["members"], value["page_size"]
        if not isinstance(members, list) or not all(isinstance(m, str) and m for m in members):
            raise ValueError("a shard spec's members must be a list of non-empty ids")
        if page_size is not None and (type(page_size) is not int or page_size < 1):
            raise ValueError("a shard spec's page_size must be a positive int or null")
        if type(value["shard"]) is not int or value["shard"] < 0:
            raise ValueError("a shard spec's shard must be an int >= 0")
        if not isinstance(value["export"], str) or not isinstance(value["out"], str):
            raise ValueError("a shard spec's export and out must be str")
        return cls(value["export"], value["shard"], value["out"], tuple(members), page_size)


def shard_file(out: str | Path, shard: int) -> Path:
    """Where a finished shard's rows are (JSON Lines, the columns of ``credits export``).

    :param out: the output folder.
    :param shard: the shard's number.
    """
    return Path(out) / f"shard-{shard:06d}.jsonl"


def journal_file(out: str | Path, shard: int) -> Path:
    """Where a shard's journal is while the shard is not finished.

    :param out: the output folder.
    :param shard: the shard's number.
    """
    return Path(out) / ".inveterate" / f"shard-{shard:06d}.sqlite"


def is_transient(error: Exception) -> bool:
    """Whether a member's failure may go away by itself (5xx, 429, network, timeout).

    :param error: a member's error from the fan-out.
    :returns: False for what another try cannot fix: a refused key, an unknown member, a
        bad request, a looping cursor.
    """
    if isinstance(error, StreamAbortedError):
        return is_transient(error.error)
    return not isinstance(error, _PERMANENT)


async def run_shard(
    client: InveterateClient,
    spec: ShardSpec,
    *,
    concurrency: int,
    job_timeout: float,
    run: int = 1,
) -> dict[str, Any]:
    """Read a shard's unfinished members for one time slice; write the shard when done.

    :param client: the worker's client.
    :param spec: the shard.
    :param concurrency: members read at the same time.
    :param job_timeout: arq's limit for this run; reading stops at a fraction of it.
    :param run: arq's try number, reported in the summary.
    :returns: ``{"shard", "members", "credits", "runs"}`` once the shard file exists.
    :raises arq.Retry: to go on in a later run (time slice over, transient failures, or
        the journal held by another run); everything read so far is kept.
    :raises ShardFailed: when another run cannot help.
    """
    target = shard_file(spec.out, spec.shard)
    journal_path = journal_file(spec.out, spec.shard)
    if target.exists():
        remove_journal(journal_path)  # left by a run killed just after the rename
        rows = await _uncancelled(count_lines, target)
        return _summary(spec, rows, run)
    try:
        journal = ShardJournal(journal_path)
    except sqlite3.OperationalError as exc:  # "database is locked": another run holds it
        raise Retry(defer=job_timeout) from exc
    finished = False
    try:
        stalled = journal.begin_run(spec.members)
        if stalled > MAX_STALLED_RUNS:
            raise ShardFailed(
                f"shard {spec.shard}: nothing read in {MAX_STALLED_RUNS} runs in a row; "
                f"last error: {journal.last_error() or 'none (workers killed?)'}"
            )
        try:
            failures = await asyncio.wait_for(
                _read(client, journal, spec, concurrency), job_timeout * SLICE_FRACTION
            )
        except asyncio.TimeoutError:
            raise Retry(defer=0) from None  # the slice is over: go on in the next run
        except StreamAbortedError as exc:
            failures = {"members": exc}
        _settle(journal, spec, failures)
        rows = await _uncancelled(_write_shard, journal, target)
        finished = True
    finally:
        if finished:
            journal.delete()
        else:
            journal.close()
    return _summary(spec, rows, run)


async def _read(
    client: InveterateClient, journal: ShardJournal, spec: ShardSpec, concurrency: int
) -> dict[str, Exception]:
    failures: dict[str, Exception] = {}
    members = journal.unfinished()
    if not members:
        return failures
    stream = client.iter_credits_many(
        members, concurrency=concurrency, page_size=spec.page_size, on_error="collect"
    )
    loop = asyncio.get_running_loop()
    committed = loop.time()
    try:
        async with stream:
            async for event in stream.events():
                member = str(event.customer_id)
                if isinstance(event, LedgerPage):
                    lines = [export_line(member, credit) for credit in event.credits]
                    journal.record_page(member, lines, event.position)
                    if (
                        journal.pending >= _COMMIT_PAGES
                        or loop.time() - committed > _COMMIT_SECONDS
                    ):
                        journal.commit()
                        committed = loop.time()
                elif event.error is not None:
                    failures[member] = event.error
    finally:
        journal.commit()  # also when stopped: the pages taken were read whole
    return failures


def _settle(journal: ShardJournal, spec: ShardSpec, failures: Mapping[str, Exception]) -> None:
    """Return when every member is done; else raise to retry later or to give up."""
    if not failures:
        return
    texts = [f"{member}: {_describe(error)}" for member, error in failures.items()]
    journal.record_error(texts[-1])
    permanent = [
        text
        for text, error in zip(texts, failures.values(), strict=True)
        if not is_transient(error)
    ]
    if permanent:
        more = len(permanent) - _LISTED_FAILURES
        raise ShardFailed(
            f"shard {spec.shard}: {len(permanent)} member(s) cannot be read: "
            + "; ".join(permanent[:_LISTED_FAILURES])
            + (f"; and {more} more" if more > 0 else "")
        )
    # Members that made progress reset the count: those run again soon.
    raise Retry(defer=min(_MAX_RETRY_DELAY, 2 ** journal.stalled_runs()))


def _write_shard(journal: ShardJournal, target: Path) -> int:
    return write_atomically(target, journal.write_rows)


async def _uncancelled(function: Callable[..., T], *args: Any) -> T:
    """Run ``function`` in a thread; if cancelled meanwhile, wait for it, then re-raise."""
    task = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        raise


def _summary(spec: ShardSpec, rows: int, run: int) -> dict[str, Any]:
    return {"shard": spec.shard, "members": len(spec.members), "credits": rows, "runs": run}


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
