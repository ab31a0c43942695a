"""Progress displays on stderr (rich), or nothing when stderr is not a terminal."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ._output import plural


class Tracker:
    """Receives counts as work goes on; this base class shows nothing."""

    def update(self, *, credits: int, pages: int = 0, members: int = 0) -> None:
        """Record the running totals (not increments)."""


class _RichTracker(Tracker):
    def __init__(self, progress: Progress, task: TaskID, *, by_member: bool) -> None:
        # A ledger is updated once a page: redraw at once, not at the next tick.
        self._refresh = not by_member
        self._progress = progress
        self._task = task
        self._by_member = by_member
        self._started = time.monotonic()

    def update(self, *, credits: int, pages: int = 0, members: int = 0) -> None:
        elapsed = time.monotonic() - self._started
        rate = f"{credits / elapsed:,.0f} credits/s" if elapsed > 0 else ""
        self._progress.update(
            self._task,
            completed=members if self._by_member else credits,
            credits=plural(credits, "credit", grouped=True),
            pages=plural(pages, "page", grouped=True),
            rate=rate,
            refresh=self._refresh,
        )


@contextmanager
def ledger_progress(
    enabled: bool, *, redirect_stdout: bool, console: Console | None = None
) -> Iterator[Tracker]:
    """A spinner with the credits and pages read so far (for ``credits list``).

    ``redirect_stdout`` lets rows printed to the same terminal appear above it;
    ``console`` is where to draw it (default: stderr).
    """
    if not enabled:
        yield Tracker()
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("reading ledger: {task.fields[credits]}, {task.fields[pages]}"),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        transient=True,
        redirect_stdout=redirect_stdout,
        redirect_stderr=True,  # log lines (-v) print above the display
    )
    with progress:
        task = progress.add_task(
            "ledger", total=None, credits=plural(0, "credit"), pages=plural(0, "page"), rate=""
        )
        yield _RichTracker(progress, task, by_member=False)


@contextmanager
def export_progress(
    enabled: bool,
    *,
    total: int | None,
    done: int = 0,
    console: Console | None = None,
    get_time: Callable[[], float] | None = None,
) -> Iterator[Tracker]:
    """A bar of members done (out of ``total`` when known, then with the time left),
    credits and rate.

    :param done: members already done (a resumed export).
    :param console: where to draw it (default: stderr).
    :param get_time: the clock the time left is estimated with (default: monotonic).
    """
    if not enabled:
        yield Tracker()
        return
    columns = [
        SpinnerColumn(),
        TextColumn("members"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[credits]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    ]
    if total is not None:
        columns += [TextColumn("eta"), TimeRemainingColumn()]
    progress = Progress(
        *columns,
        console=console or Console(stderr=True),
        redirect_stdout=False,
        redirect_stderr=True,  # log lines (-v) print above the display
        get_time=get_time,
    )
    with progress:
        task = progress.add_task(
            "export",
            total=total,
            completed=done,
            credits=plural(0, "credit"),
            pages=plural(0, "page"),
            rate="",
        )
        yield _RichTracker(progress, task, by_member=True)


@contextmanager
def cluster_progress(enabled: bool, *, total: int) -> Iterator[Callable[[Any], None]]:
    """A bar of shards done out of ``total``, with members and credits; yields the
    function to call with each ``cluster.Progress``."""
    if not enabled:
        yield lambda progress: None
        return
    display = Progress(
        SpinnerColumn(),
        TextColumn("shards"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[members]} members, {task.fields[credits]} credits"),
        TextColumn("{task.fields[failed]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with display:
        task = display.add_task("cluster", total=total, members="0", credits="0", failed="")

        def show(progress: Any) -> None:
            display.update(
                task,
                completed=progress.done,
                members=f"{progress.members:,}",
                credits=f"{progress.credits:,}",
                failed=f"{len(progress.failed)} failed" if progress.failed else "",
            )

        yield show
