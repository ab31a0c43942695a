"""Reading a batch file (CSV or JSON Lines) into adjustments, every line checked first.

Columns: ``ref``, ``member_id``, ``amount`` (required), ``note``, ``force``. Amounts have
the one strict form of ``credits add`` (``5``, ``-2.50``: no exponent, ``+``, spaces,
separators or non-ASCII digits), so what is sent is exactly what the file says.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from .. import CreditAdjustment
from ._amounts import parse_amount

COLUMNS = ("ref", "member_id", "amount", "note", "force")
REQUIRED = ("ref", "member_id", "amount")
_INTEGER = re.compile(r"-?[0-9]+")
_FORCE = {"": None, "true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
_SHOWN_ERRORS = 20

Line = tuple[int, "Mapping[str, Any] | str"]  # a line number, and its fields or a problem


class BatchFileError(ValueError):
    """Lines of a batch file that cannot be sent; nothing was sent.

    ``problems`` are ``"line N: ..."`` texts, in file order.
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        shown = problems[:_SHOWN_ERRORS]
        more = len(problems) - len(shown)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(
            f"{path}: {len(problems)} problem(s), nothing was sent:\n  " + "\n  ".join(shown) + tail
        )
        self.problems = problems


class _NumberText(str):
    """A JSON number, kept as the text it was written with."""


def read_batch(path: str) -> list[CreditAdjustment]:
    """Every adjustment of a CSV or JSON Lines file, or :class:`BatchFileError`.

    The format follows the extension (``.jsonl``/``.ndjson``, else CSV), or the first
    character for other names (``{`` for JSON Lines).

    :raises BatchFileError: listing every bad line (all lines are read first).
    :raises OSError: if the file cannot be read.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            text = file.read()
    except UnicodeDecodeError as exc:
        raise BatchFileError(path, [f"the file is not UTF-8 ({exc.reason})"]) from None
    lines = _jsonl(text) if _is_jsonl(path, text) else _csv(text)
    adjustments: list[CreditAdjustment] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for number, fields in lines:
        if isinstance(fields, str):
            problems.append(f"line {number}: {fields}")
            continue
        try:
            adjustment = _adjustment(fields)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if adjustment.ref in first_line:
            problems.append(
                f"line {number}: ref {adjustment.ref!r} is already on line "
                f"{first_line[adjustment.ref]}"
            )
            continue
        first_line[adjustment.ref] = number
        adjustments.append(adjustment)
    if problems:
        raise BatchFileError(path, problems)
    return adjustments


def _is_jsonl(path: str, text: str) -> bool:
    lowered = path.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return True
    if lowered.endswith(".csv"):
        return False
    return text.lstrip().startswith("{")


def _csv(text: str) -> Iterator[Line]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
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


def _jsonl(text: str) -> Iterator[Line]:
    # Split on line feeds only: JSON strings may hold other Unicode line breaks.
    for number, line in enumerate(text.split("\n"), start=1):
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


def _adjustment(fields: Mapping[str, Any]) -> CreditAdjustment:
    amount = parse_amount(_text(fields, "amount"))
    note = fields.get("note")
    if note is not None and (not isinstance(note, str) or isinstance(note, _NumberText)):
        raise ValueError(f"note must be text, not {note!r}")
    return CreditAdjustment(
        ref=_text(fields, "ref"),
        customer_id=_member(fields),
        amount=amount,
        note=note or None,
        force=_force(fields.get("force")),
    )


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


def _force(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and not isinstance(value, _NumberText):
        key = value.strip().lower()
        if key in _FORCE:
            return _FORCE[key]
    raise ValueError(f"force must be true, false or empty, not {value!r}")
