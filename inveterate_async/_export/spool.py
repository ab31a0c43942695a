"""Rows held back until their member's turn: in memory up to a budget, then on disk.

An ordered export writes members one after the other while several are read at once;
the pages of the members that are not next wait here. Memory stays under the budget
whatever the ledgers' sizes: beyond it, pages go to one unnamed temporary file, which
is emptied whenever nothing on it is waiting any more.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO

DEFAULT_MEMORY_BYTES = 8 << 20

# A chunk is bytes in memory, or (offset, length) in the temporary file.
_Chunk = bytes | tuple[int, int]


class Spool:
    """Byte chunks kept per key (a member's place in the export), in arrival order.

    :param memory_bytes: how much may be held in memory before chunks go to disk.
    """

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self._memory_budget = memory_bytes
        self._chunks: dict[int, list[_Chunk]] = {}
        self._in_memory = 0
        self._file: IO[bytes] | None = None
        self._file_end = 0
        self._on_disk = 0  # chunks waiting in the file

    @property
    def bytes_in_memory(self) -> int:
        """The bytes held in memory now."""
        return self._in_memory

    @property
    def bytes_on_disk(self) -> int:
        """The size of the temporary file now (0 when it is empty or not created)."""
        return self._file_end

    def add(self, key: int, data: bytes) -> None:
        """Keep ``data`` after the chunks already kept for ``key``."""
        chunks = self._chunks.setdefault(key, [])
        if self._in_memory + len(data) <= self._memory_budget:
            chunks.append(data)
            self._in_memory += len(data)
            return
        file = self._file
        if file is None:
            # Lives as long as the spool: close() closes (and so deletes) it.
            file = self._file = tempfile.TemporaryFile(prefix="inveterate-spool-")  # noqa: SIM115
        file.seek(self._file_end)
        file.write(data)
        chunks.append((self._file_end, len(data)))
        self._file_end += len(data)
        self._on_disk += 1

    def pop(self, key: int) -> Iterator[bytes]:
        """Yield the chunks kept for ``key`` in order, forgetting them."""
        for chunk in self._chunks.pop(key, ()):
            yield self._take(chunk)

    def discard(self, key: int) -> None:
        """Forget the chunks kept for ``key``."""
        for chunk in self._chunks.pop(key, ()):
            self._forget(chunk)

    def close(self) -> None:
        """Forget everything and delete the temporary file."""
        self._chunks.clear()
        self._in_memory = self._file_end = self._on_disk = 0
        if self._file is not None:
            self._file.close()
            self._file = None

    def _take(self, chunk: _Chunk) -> bytes:
        if isinstance(chunk, bytes):
            self._forget(chunk)
            return chunk
        offset, length = chunk
        assert self._file is not None
        self._file.seek(offset)
        data = self._file.read(length)
        self._forget(chunk)
        return data

    def _forget(self, chunk: _Chunk) -> None:
        if isinstance(chunk, bytes):
            self._in_memory -= len(chunk)
            return
        self._on_disk -= 1
        if self._on_disk == 0 and self._file is not None:
            self._file.truncate(0)
            self._file_end = 0
