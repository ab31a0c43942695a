"""The member ids of an export: arguments, then the lines of ``--ids-file`` (or stdin).

Read lazily (a file of a million ids is never loaded at once) and never in a way that
blocks the event loop: a pipe or terminal is watched by the loop, so Ctrl-C stops a
command waiting on stdin at once. Blank lines are skipped, spaces around an id stripped,
and an id listed twice is exported once (the repeats are counted, for one warning).

The header rule: an ids file has no header line. ``--skip-header`` drops its first line;
without it, a first line that reads like a column name (``id``, ``member_id``,
``customer_id``...) is refused, with a hint, before anything is sent.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import TextIO

from ._exits import UsageFailure

_CHUNK_BYTES = 1 << 16
_BATCH_CHARS = 1 << 16

# Compared after lower-casing and removing spaces, "_" and "-": "Member ID" is "memberid".
_COLUMN_NAMES = frozenset(
    {"id", "ids", "member", "members", "memberid", "customer", "customers", "customerid"}
)
_FIELD_END = re.compile(r"[,;\t]")
_NOT_NAME = re.compile(r"[\s_\-\"']")


def looks_like_column_name(line: str) -> bool:
    """Whether a first line is a header: its first field is a name such as ``member_id``."""
    first_field = _FIELD_END.split(line, maxsplit=1)[0]
    return _NOT_NAME.sub("", first_field).lower() in _COLUMN_NAMES


async def read_lines(stream: TextIO) -> AsyncGenerator[str, None]:
    """Yield the lines of ``stream`` without their line ends, lazily.

    A pipe, terminal or socket is read when the event loop says it is readable (so the
    wait can be cancelled); a regular file in batches in a worker thread; anything else
    (a stream without a file descriptor) line by line in a worker thread.
    """
    fd = _watchable_fd(stream)
    if fd is not None:
        async for line in _watched_lines(fd):
            yield line
        return
    read: Callable[[], list[str]]
    if _is_regular_file(stream):

        def read() -> list[str]:
            return stream.readlines(_BATCH_CHARS)
    else:

        def read() -> list[str]:
            line = stream.readline()
            return [line] if line else []

    while lines := await asyncio.to_thread(read):
        for line in lines:
            yield line.rstrip("\r\n")


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _is_regular_file(stream: TextIO) -> bool:
    fd = _fileno(stream)
    try:
        return fd is not None and stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _watchable_fd(stream: TextIO) -> int | None:
    """The descriptor of ``stream`` if the running loop can watch it (a pipe, a terminal)."""
    fd = _fileno(stream)
    if fd is None or _is_regular_file(stream):
        return None
    loop = asyncio.get_running_loop()
    try:
        loop.add_reader(fd, lambda: None)
    except (NotImplementedError, OSError, ValueError):  # e.g. /dev/null, or Windows
        return None
    loop.remove_reader(fd)
    return fd


async def _watched_lines(fd: int) -> AsyncGenerator[str, None]:
    loop = asyncio.get_running_loop()
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    while True:
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _resolve, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        data = os.read(fd, _CHUNK_BYTES)
        pending += decoder.decode(data, final=not data)
        *lines, pending = pending.split("\n")
        for line in lines:
            yield line.rstrip("\r")
        if not data:
            if pending:
                yield pending.rstrip("\r")
            return


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class MemberIds:
    """The ids to export, each once, in the order given: ``args`` first, then ``lines``.

    :param args: ids given as arguments.
    :param lines: the lines of the ids file, or None.
    :param source: how to name the ids file in messages (``members.txt``, ``stdin``).
    :param skip_header: drop the first non-blank line of ``lines``.
    """

    def __init__(
        self,
        args: Sequence[str],
        lines: AsyncIterator[str] | None,
        *,
        source: str = "the ids file",
        skip_header: bool = False,
    ) -> None:
        self._args = args
        self._lines = lines
        self._source = source
        self._skip_header = skip_header
        self._first: list[str] | None = None  # the file's first id, once read
        self._seen: set[str] = set()
        #: Ids listed more than once, with how many times they were repeated.
        self.duplicates: dict[str, int] = {}

    async def check_header(self) -> None:
        """Read up to the file's first id now, applying the header rule.

        :raises UsageFailure: if the first line is a column name and ``skip_header`` is off,
            or the file is not UTF-8 text.
        """
        if self._first is not None or self._lines is None:
            return
        self._first = []
        first_line = True
        async for line in self._decoded(self._lines):
            member_id = line.strip()
            if not member_id:
                continue
            if first_line:
                first_line = False
                if self._skip_header:
                    continue
                if looks_like_column_name(member_id):
                    raise UsageFailure(
                        f"{self._source}: the first line {member_id!r} is a column name, not "
                        "a member id: pass --skip-header to skip it"
                    )
            self._first.append(member_id)
            return

    async def _decoded(self, lines: AsyncIterator[str]) -> AsyncIterator[str]:
        try:
            async for line in lines:
                yield line
        except UnicodeDecodeError as exc:
            raise UsageFailure(f"{self._source} is not UTF-8 text: {exc.reason}") from None

    async def _file_ids(self) -> AsyncIterator[str]:
        if self._lines is None:
            return
        await self.check_header()
        for member_id in self._first or ():
            yield member_id
        async for line in self._decoded(self._lines):
            member_id = line.strip()
            if member_id:
                yield member_id

    async def __aiter__(self) -> AsyncIterator[str]:
        for member_id in self._args:
            if self._is_new(member_id.strip()):
                yield member_id.strip()
        async for member_id in self._file_ids():
            if self._is_new(member_id):
                yield member_id

    def _is_new(self, member_id: str) -> bool:
        if not member_id:
            return False
        if member_id in self._seen:
            self.duplicates[member_id] = self.duplicates.get(member_id, 0) + 1
            return False
        self._seen.add(member_id)
        return True


def count_ids(args: Sequence[str], path: str | None, *, skip_header: bool) -> int:
    """About how many ids there are (duplicates counted), reading ``path`` in constant memory."""
    count = sum(1 for member_id in args if member_id.strip())
    if path is not None:
        with open(path, encoding="utf-8-sig", errors="replace") as file:
            lines = sum(1 for line in file if line.strip())
        count += max(0, lines - 1) if skip_header else lines
    return count


def duplicates_warning(duplicates: dict[str, int], *, shown: int = 10) -> str | None:
    """One warning line about repeated ids (each was exported once), or None."""
    if not duplicates:
        return None
    listed = [
        f"{member_id} ({repeats + 1} times)"
        for member_id, repeats in list(duplicates.items())[:shown]
    ]
    more = len(duplicates) - len(listed)
    if more:
        listed.append(f"and {more} more")
    count = len(duplicates)
    ids = "id was" if count == 1 else "ids were"
    return f"Warning: {count} member {ids} listed more than once, exported once: " + ", ".join(
        listed
    )
