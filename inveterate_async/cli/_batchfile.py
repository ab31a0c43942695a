"""Reading a batch file (CSV or JSON Lines) into adjustments, every line checked first.

Columns: ``ref``, ``member_id``, ``amount`` (required), ``note``, ``force``. Amounts have
the one strict form of ``credits add`` (``5``, ``-2.50``: no exponent, ``+``, spaces,
separators or non-ASCII digits), so what is sent is exactly what the file says.
"""

from __future__ import annotations

import csv
import decimal
import json
import re
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import IO, Any, NoReturn, TypeVar

from .. import CreditAdjustment
from ._amounts import parse_amount

T = TypeVar("T")

COLUMNS = ("ref", "member_id", "amount", "note", "force")
REQUIRED = ("ref", "member_id", "amount")
_INTEGER = re.compile(r"-?[0-9]+")
_FORCE = {"": None, "true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
_SHOWN_ERRORS = 20
_KEPT_ERRORS = 1000
_SUMS = decimal.Context(prec=80)  # exact below 80 digits

Line = tuple[int, "Mapping[str, Any] | str"]  # a line number, and its fields or a problem


class BatchFileError(ValueError):
    """Lines of a batch file that cannot be sent; nothing was sent.

    ``problems`` are ``"line N: ..."`` texts, in file order (the first
    :data:`_KEPT_ERRORS`); ``count`` is how many there are.
    """

    def __init__(self, path: str, problems: list[str], count: int | None = None) -> None:
        count = len(problems) if count is None else count
        shown = problems[:_SHOWN_ERRORS]
        more = count - len(shown)
        tail = f"\n  ... and {more:,} more" if more > 0 else ""
        super().__init__(
            f"{path}: {count:,} problem(s), nothing was sent:\n  " + "\n  ".join(shown) + tail
        )
        self.problems = problems
        self.count = count


class _NumberText(str):
    """A JSON number, kept as the text it was written with."""


class BatchFile:
    """A CSV or JSON Lines batch file, read as a stream each time it is iterated.

    Iterating yields the adjustments of the good lines; after the last line it raises
    :class:`BatchFileError` listing the problems of every bad line, so a run that merges
    the batch before sending sends nothing. A ref given twice is found by the journal.
    The format follows the extension (``.jsonl``/``.ndjson``, else CSV), or the first
    character for other names (``{`` for JSON Lines).

    :param max_decimal_places: refuse amounts with more decimal places (None: any).
    """

    def __init__(self, path: str, *, max_decimal_places: int | None = None) -> None:
        self.path = path
        self.max_decimal_places = max_decimal_places
        self.adjustments = 0  # of the last complete read
        self.net = Decimal(0)

    def __iter__(self) -> Iterator[CreditAdjustment]:
        problems: list[str] = []
        count = adjustments = 0
        net = Decimal(0)
        try:
            for number, item in self._lines():
                if isinstance(item, str):
                    count += 1
                    if len(problems) < _KEPT_ERRORS:
                        problems.append(f"line {number}: {item}")
                else:
                    adjustments += 1
                    net = _SUMS.add(net, item.amount)
                    yield item
        except UnicodeDecodeError as exc:
            count += 1
            problems.append(f"the file is not UTF-8 ({exc.reason})")
        if count:
            raise BatchFileError(self.path, problems, count)
        self.adjustments, self.net = adjustments, net

    def check(self) -> None:
        """Read the whole file once: :class:`BatchFileError` for any bad line."""
        for _ in self:
            pass

    def _lines(self) -> Iterator[tuple[int, CreditAdjustment | str]]:
        with open(self.path, "rb") as probe:
            start = probe.read(4096).decode("utf-8-sig", errors="replace")
        jsonl = _is_jsonl(self.path, start)
        newline = "\n" if jsonl else ""  # JSON strings may hold other Unicode line breaks
        with open(self.path, encoding="utf-8-sig", newline=newline) as file:
            for number, fields in _jsonl(file) if jsonl else _csv(file):
                if isinstance(fields, str):
                    yield number, fields
                    continue
                try:
                    yield number, self._adjustment(fields, jsonl)
                except ValueError as exc:
                    yield number, str(exc)

    def _adjustment(self, fields: Mapping[str, Any], jsonl: bool) -> CreditAdjustment:
        adjustment = _adjustment(fields, jsonl=jsonl)
        places = self.max_decimal_places
        exponent = adjustment.amount.as_tuple().exponent
        if places is not None and isinstance(exponent, int) and -exponent > places:
            raise ValueError(
                f"amount {adjustment.amount} has more than {places} decimal places "
                f"(--decimal-places {-exponent} allows it)"
            )
        return adjustment


def _is_jsonl(path: str, text: str) -> bool:
    lowered = path.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return True
    if lowered.endswith(".csv"):
        return False
    return text.lstrip().startswith("{")


def _csv(file: IO[str]) -> Iterator[Line]:
    reader = csv.reader(file, strict=True)
    header = next(reader, None)
    if header is None:
        return
    columns = [name.strip() for name in header]
    problem = _column_problem(columns)
    if problem:
        yield 1, problem
        return
    start = reader.line_num + 1
    try:
        for cells in reader:
            number, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(columns):
                yield number, f"{len(cells)} fields, but the header has {len(columns)} columns"
                continue
            yield number, dict(zip(columns, cells, strict=False))  # short rows: missing fields
    except csv.Error as exc:
        yield start, f"not valid CSV ({exc})"


def _jsonl(file: IO[str]) -> Iterator[Line]:
    for number, line in enumerate(file, start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(
                line,
                parse_float=_NumberText,
                parse_int=_NumberText,
                parse_constant=_reject_constant,
            )
        except ValueError as exc:
            yield number, f"not valid JSON ({exc})"
            continue
        if not isinstance(fields, dict):
            yield number, "not a JSON object"
            continue
        yield number, _column_problem(list(fields)) or fields


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def _column_problem(columns: list[str]) -> str:
    unknown = [name for name in columns if name not in COLUMNS]
    missing = [name for name in REQUIRED if name not in columns]
    problems = []
    if unknown:
        problems.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if not problems:
        return ""
    return "; ".join(problems) + f" (columns are: {', '.join(COLUMNS)})"


def _adjustment(fields: Mapping[str, Any], *, jsonl: bool) -> CreditAdjustment:
    """The adjustment of one line; every problem of the line in one ``ValueError``."""
    problems: list[str] = []

    def checked(check: Callable[[], T]) -> T | None:
        try:
            return check()
        except ValueError as exc:
            problems.append(str(exc))
            return None

    ref = checked(lambda: _text(fields, "ref"))
    member = checked(lambda: _member(fields))
    amount = checked(lambda: parse_amount(_text(fields, "amount")))
    note = checked(lambda: _note(fields.get("note")))
    force = checked(lambda: _force(fields.get("force"), jsonl=jsonl))
    if problems or ref is None or member is None or amount is None:
        raise ValueError("; ".join(problems))
    return CreditAdjustment(ref=ref, customer_id=member, amount=amount, note=note, force=force)


def _note(note: Any) -> str | None:
    if note is not None and (not isinstance(note, str) or isinstance(note, _NumberText)):
        raise ValueError(f"note must be text, not {note!r}")
    return note or None


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} is missing")
    if value != value.strip():
        raise ValueError(f"{name} has spaces around it: {value!r}")
    return value


def _member(fields: Mapping[str, Any]) -> str:
    value = fields.get("member_id")
    if isinstance(value, _NumberText) and not _INTEGER.fullmatch(value):
        raise ValueError(f"member_id must be text or a whole number, not {value}")
    return _text(fields, "member_id")


def _force(value: Any, *, jsonl: bool) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if jsonl:  # JSON has its own true, false and null
        shown = value if isinstance(value, _NumberText) else json.dumps(value)
        raise ValueError(f"force must be true, false or null, not {shown}")
    if isinstance(value, str) and not isinstance(value, _NumberText):
        key = value.strip().lower()
        if key in _FORCE:
            return _FORCE[key]
    raise ValueError(f"force must be true, false or empty, not {value!r}")
