"""Turning credits into rows, and writing rows as JSON Lines, CSV or rich tables.

Money is never converted to float: amounts are written with the exact digits of their
:class:`~decimal.Decimal` (JSON numbers in JSON Lines, text in CSV and tables).
"""

from __future__ import annotations

import csv
import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

# Shared with the cluster workers; re-exported for the other CLI modules.
from .._rows import CREDIT_COLUMNS as CREDIT_COLUMNS
from .._rows import EXPORT_COLUMNS as EXPORT_COLUMNS
from .._rows import credit_row as credit_row
from .._rows import json_line
from .._rows import json_text as json_text

FORMATS = ("table", "jsonl", "csv")

Row = Sequence[Any]

# Fixed widths keep the columns of successive pages' tables aligned; "note" takes the
# rest of the line (at least _MIN_NOTE_WIDTH).
_TABLE_WIDTHS = MappingProxyType(
    {
        "member_id": 10,
        "created_at": 20,
        "amount": 9,
        "new_balance": 11,
        "reason": 17,
        "id": 10,
    }
)
_MIN_NOTE_WIDTH = 8
_MONEY_COLUMNS = frozenset({"amount", "new_balance"})


def cell_text(value: Any) -> str:
    """The text of one CSV or table cell: exact digits for money, empty for None."""
    if value is None:
        return ""
    if isinstance(value, (str, Decimal)) or type(value) is int:
        return str(value)
    return json_text(value)


class RowWriter(ABC):
    """Writes to ``stream``, or to whatever ``sys.stdout`` is at the time when None.

    Looking stdout up late lets a live progress display redirect it.
    """

    def __init__(self, stream: TextIO | None, columns: Sequence[str]) -> None:
        self._stream = stream
        self.columns = tuple(columns)
        self.rows = 0

    @property
    def stream(self) -> TextIO:
        return sys.stdout if self._stream is None else self._stream

    def write_rows(self, rows: Sequence[Row]) -> None:
        for row in rows:
            self.write_row(row)

    @abstractmethod
    def write_row(self, row: Row) -> None:
        """Write (or buffer) one row of values in column order."""

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.flush()


class JsonLinesWriter(RowWriter):
    """One JSON object per line, keys in column order."""

    def __init__(self, stream: TextIO | None, columns: Sequence[str]) -> None:
        super().__init__(stream, columns)
        self._keys = [json.dumps(name) + ":" for name in self.columns]

    def write_row(self, row: Row) -> None:
        self.stream.write(json_line(self._keys, row))
        self.rows += 1


class CsvWriter(RowWriter):
    """CSV with a header line, ``\\n`` line endings, quoting only where needed."""

    def __init__(self, stream: TextIO | None, columns: Sequence[str]) -> None:
        super().__init__(stream, columns)
        self._header_written = False

    def write_row(self, row: Row) -> None:
        writer = csv.writer(self.stream, lineterminator="\n")
        if not self._header_written:
            writer.writerow(self.columns)
            self._header_written = True
        writer.writerow([cell_text(value) for value in row])
        self.rows += 1

    def close(self) -> None:
        if not self._header_written:
            csv.writer(self.stream, lineterminator="\n").writerow(self.columns)
            self._header_written = True
        super().close()


class TableWriter(RowWriter):
    """A rich table, printed one page at a time with the same column widths.

    Memory stays at one page: each page is rendered as its own table, with the header
    only above the first.
    """

    def __init__(self, stream: TextIO | None, columns: Sequence[str]) -> None:
        super().__init__(stream, columns)
        self._pending: list[Row] = []
        self._widths: list[int] | None = None

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

    def _print(self, *, header: bool) -> None:
        console = Console(file=self.stream, highlight=False)
        if self._widths is None:
            fixed = sum(_TABLE_WIDTHS.get(name, 0) for name in self.columns)
            note = max(_MIN_NOTE_WIDTH, console.width - fixed - (len(self.columns) - 1))
            self._widths = [_TABLE_WIDTHS.get(name, note) for name in self.columns]
        table = Table(
            box=None,
            show_header=header,
            header_style="bold",
            pad_edge=False,
            padding=(0, 1, 0, 0),
        )
        for name, width in zip(self.columns, self._widths, strict=True):
            money = name in _MONEY_COLUMNS
            table.add_column(
                name,
                width=width,
                justify="right" if money else "left",
                overflow="ellipsis" if money else "fold",
                no_wrap=money,
            )
        for row in self._pending:
            table.add_row(
                *(_table_cell(name, value) for name, value in zip(self.columns, row, strict=True))
            )
        self._pending.clear()
        # Rendered to text first: a rich Console would bypass a live display's redirection
        # of stdout, and print under the progress line instead of above it.
        with console.capture() as captured:
            console.print(table)
        self.stream.write(captured.get())
        self.stream.flush()


def _table_cell(name: str, value: Any) -> str:
    text = cell_text(value)
    if name == "created_at" and text.endswith("+00:00"):
        return text[:-6] + "Z"  # shorter, still ISO 8601
    return text


def make_writer(fmt: str, stream: TextIO | None, columns: Sequence[str]) -> RowWriter:
    """The writer for ``fmt`` (one of :data:`FORMATS`)."""
    writers: dict[str, type[RowWriter]] = {
        "jsonl": JsonLinesWriter,
        "csv": CsvWriter,
        "table": TableWriter,
    }
    return writers[fmt](stream, columns)
