"""Turning credits into rows, and writing rows as JSON Lines, CSV or rich tables.

Money is never converted to float: amounts are written with the exact digits of their
:class:`~decimal.Decimal` (JSON numbers in JSON Lines, text in CSV and tables).
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import MappingProxyType
from typing import TextIO

from rich.console import Console
from rich.table import Table

# Shared with export_credits and the cluster workers, so all write the same bytes.
from .._export.rows import CREDIT_COLUMNS as CREDIT_COLUMNS
from .._export.rows import EXPORT_COLUMNS as EXPORT_COLUMNS
from .._export.rows import Row as Row
from .._export.rows import cell_text as cell_text
from .._export.rows import credit_row as credit_row
from .._export.rows import csv_text as csv_text
from .._export.rows import json_text as json_text
from .._export.rows import jsonl_encoder
from .._export.rows import row_encoder as row_encoder
from .._export.rows import timestamp_text as timestamp_text
from ._exits import write_failed

FORMATS = ("table", "jsonl", "csv")


# Fixed widths keep the columns of successive pages' tables aligned; "note" takes the
# rest of the line. Below _ID_MIN_WIDTH columns the table leaves "id" out, so that a note
# keeps at least about 20 characters on an 80-column terminal.
_TABLE_WIDTHS = MappingProxyType(
    {
        "member_id": 10,
        "created_at": 20,
        "amount": 9,
        "new_balance": 11,
        "reason": 14,
        "id": 10,
    }
)
_MIN_NOTE_WIDTH = 12
_ID_MIN_WIDTH = 100
_MONEY_COLUMNS = frozenset({"amount", "new_balance"})


def plural(count: int, noun: str, *, grouped: bool = False) -> str:
    """``1 credit``, ``2 credits``, ``0 credits`` (nouns whose plural adds an s).

    :param grouped: write thousands with commas (``1,234 credits``).
    """
    number = f"{count:,}" if grouped else str(count)
    return f"{number} {noun}" if count == 1 else f"{number} {noun}s"


class RowWriter(ABC):
    """Writes to ``stream``, or to whatever ``sys.stdout`` is at the time when None.

    Looking stdout up late lets a live progress display redirect it. A failed write
    (a full disk, a closed pipe) raises :class:`~._exits.WriteFailed` naming ``target``.
    """

    def __init__(
        self, stream: TextIO | None, columns: Sequence[str], *, target: str = "stdout"
    ) -> None:
        self._stream = stream
        self.columns = tuple(columns)
        self.rows = 0
        self.target = target

    @property
    def stream(self) -> TextIO:
        return sys.stdout if self._stream is None else self._stream

    def write_rows(self, rows: Sequence[Row]) -> None:
        for row in rows:
            self.write_row(row)

    @abstractmethod
    def write_row(self, row: Row) -> None:
        """Write (or buffer) one row of values in column order."""

    def _write(self, text: str) -> None:
        stream = self.stream
        try:
            stream.write(text)
        except OSError as exc:
            raise write_failed(self.target, exc, stream) from None

    def flush(self) -> None:
        stream = self.stream
        try:
            stream.flush()
        except OSError as exc:
            raise write_failed(self.target, exc, stream) from None

    def close(self) -> None:
        self.flush()


class JsonLinesWriter(RowWriter):
    """One JSON object per line, keys in column order (money as strings with
    ``amounts_as_strings``)."""

    def __init__(
        self,
        stream: TextIO | None,
        columns: Sequence[str],
        *,
        target: str = "stdout",
        amounts_as_strings: bool = False,
    ) -> None:
        super().__init__(stream, columns, target=target)
        self._encode = jsonl_encoder(self.columns, amounts_as_strings=amounts_as_strings)

    def write_row(self, row: Row) -> None:
        self._write(self._encode([row]))
        self.rows += 1


class CsvWriter(RowWriter):
    """CSV with a header line, ``\\n`` line endings, quoting only where needed."""

    def __init__(
        self, stream: TextIO | None, columns: Sequence[str], *, target: str = "stdout"
    ) -> None:
        super().__init__(stream, columns, target=target)
        self._header_written = False

    def write_row(self, row: Row) -> None:
        self._write_header()
        self._write(csv_text([row]))
        self.rows += 1

    def _write_header(self) -> None:
        if not self._header_written:
            self._write(csv_text([self.columns]))
            self._header_written = True

    def close(self) -> None:
        self._write_header()
        super().close()


class TableWriter(RowWriter):
    """A rich table, printed one page at a time with the same column widths.

    Memory stays at one page: each page is rendered as its own table, with the header
    only above the first. Every cell stays on one line: a long one ends with an ellipsis.
    """

    def __init__(
        self, stream: TextIO | None, columns: Sequence[str], *, target: str = "stdout"
    ) -> None:
        super().__init__(stream, columns, target=target)
        self._pending: list[Row] = []
        self._layout: list[tuple[int, str, int]] | None = None  # (index, name, width)

    def write_row(self, row: Row) -> None:
        self._pending.append(row)
        self.rows += 1

    def flush(self) -> None:
        if self._pending:
            self._print(header=self.rows == len(self._pending))

    def close(self) -> None:
        if self.rows == 0:
            self._print(header=True)  # an empty ledger: just the header
        super().close()

    def _layout_for(self, width: int) -> list[tuple[int, str, int]]:
        shown = [
            (index, name)
            for index, name in enumerate(self.columns)
            if name != "id" or width >= _ID_MIN_WIDTH
        ]
        fixed = sum(_TABLE_WIDTHS.get(name, 0) for _, name in shown)
        rest = max(_MIN_NOTE_WIDTH, width - fixed - (len(shown) - 1))
        return [(index, name, _TABLE_WIDTHS.get(name, rest)) for index, name in shown]

    def _print(self, *, header: bool) -> None:
        console = Console(file=self.stream, highlight=False)
        if self._layout is None:
            self._layout = self._layout_for(console.width)
        table = Table(
            box=None,
            show_header=header,
            header_style="bold",
            pad_edge=False,
            padding=(0, 1, 0, 0),
        )
        for _, name, width in self._layout:
            table.add_column(
                name,
                width=width,
                justify="right" if name in _MONEY_COLUMNS else "left",
                overflow="ellipsis",
                no_wrap=True,
            )
        for row in self._pending:
            table.add_row(*(cell_text(row[index]) for index, _, _ in self._layout))
        self._pending.clear()
        # Rendered to text first: a rich Console would bypass a live display's redirection
        # of stdout, and print under the progress line instead of above it.
        with console.capture() as captured:
            console.print(table)
        self._write(captured.get())
        super().flush()


def make_writer(
    fmt: str,
    stream: TextIO | None,
    columns: Sequence[str],
    *,
    target: str = "stdout",
    amounts_as_strings: bool = False,
) -> RowWriter:
    """The writer for ``fmt`` (one of :data:`FORMATS`); ``amounts_as_strings`` only for
    JSON Lines."""
    if fmt == "jsonl":
        return JsonLinesWriter(
            stream, columns, target=target, amounts_as_strings=amounts_as_strings
        )
    writers: dict[str, type[RowWriter]] = {
        "jsonl": JsonLinesWriter,
        "csv": CsvWriter,
        "table": TableWriter,
    }
    return writers[fmt](stream, columns, target=target)
