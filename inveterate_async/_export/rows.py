"""The rows of an export: one per credit, with exact money, as CSV or JSON Lines text.

Shared by :func:`export_credits`, the ``inveterate`` CLI and the cluster workers, so that a
shard written by a worker has exactly the bytes ``inveterate credits export --format
jsonl`` would write. Money is never converted to float: amounts are written with the exact
digits of their :class:`~decimal.Decimal` (JSON numbers in JSON Lines, text in CSV).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .._models import Credit

CREDIT_COLUMNS = ("created_at", "amount", "new_balance", "reason", "note", "id")
EXPORT_COLUMNS = ("member_id", *CREDIT_COLUMNS)

_EXPORT_KEYS = tuple(json.dumps(name) + ":" for name in EXPORT_COLUMNS)

Row = Sequence[Any]


def timestamp_text(moment: datetime) -> str:
    """The one timestamp format of every output: ISO 8601 in UTC with a ``Z``.

    Whole seconds when the fraction is zero (``2024-03-01T12:00:00Z``), else
    milliseconds (``...:00.250Z``) or, when needed, microseconds.
    """
    utc = moment.astimezone(timezone.utc) if moment.tzinfo not in (None, timezone.utc) else moment
    text = utc.isoformat(timespec="seconds")[:19]  # without the offset; faster than strftime
    if utc.microsecond:
        fraction = f"{utc.microsecond:06d}"
        text += "." + (fraction[:3] if fraction.endswith("000") else fraction)
    return text + "Z"


def credit_row(credit: Credit) -> tuple[Any, ...]:
    """The values of :data:`CREDIT_COLUMNS` for one credit."""
    return (
        None if credit.created_at is None else timestamp_text(credit.created_at),
        credit.amount,
        credit.new_balance,
        credit.reason,
        credit.note,
        credit.id,
    )


def json_text(value: Any) -> str:
    """JSON text of a value, writing every Decimal as a number with its exact digits."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot write {value} as a JSON number")
        return str(value)
    if isinstance(value, Mapping):
        items = (
            f"{json.dumps(str(k), ensure_ascii=False)}:{json_text(v)}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_text(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def json_line(keys: Sequence[str], row: Sequence[Any]) -> str:
    """One JSON object on one line (with its ``\\n``); ``keys`` are ``'"name":'`` prefixes."""
    return (
        "{" + ",".join(key + json_text(value) for key, value in zip(keys, row, strict=True)) + "}\n"
    )


def export_line(member_id: str | int, credit: Credit) -> str:
    """The JSON Lines row of :data:`EXPORT_COLUMNS` for one credit of ``member_id``."""
    return json_line(_EXPORT_KEYS, (member_id, *credit_row(credit)))


def cell_text(value: Any) -> str:
    """The text of one CSV or table cell: exact digits for money, empty for None."""
    if value is None:
        return ""
    if isinstance(value, (str, Decimal)) or type(value) is int:
        return str(value)
    return json_text(value)


def jsonl_encoder(
    columns: Sequence[str], *, amounts_as_strings: bool = False
) -> Callable[[Sequence[Row]], str]:
    """A function turning rows into JSON Lines text, keys in column order; money as JSON
    numbers with their exact digits, or as strings (``amounts_as_strings``: for readers
    whose ``json.loads`` makes ``99999999999999999999.99`` a float)."""
    keys = [json.dumps(name) + ":" for name in columns]

    def encode(rows: Sequence[Row]) -> str:
        return "".join(json_line(keys, row) for row in rows)

    def encode_strings(rows: Sequence[Row]) -> str:
        return "".join(json_line(keys, money_as_text(row)) for row in rows)

    return encode_strings if amounts_as_strings else encode


def money_as_text(row: Row) -> Row:
    """The row with each ``Decimal`` as its exact text (a JSON string once encoded)."""
    return tuple(str(value) if isinstance(value, Decimal) else value for value in row)


def csv_text(rows: Sequence[Row]) -> str:
    """Rows as CSV lines (``\\n`` endings, quoting only where needed)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([cell_text(value) for value in row] for row in rows)
    return buffer.getvalue()


PageEncoder = Callable[[str, Sequence[Credit]], str]

# createdAt as the API writes it, already in the one format once a ".000" is dropped.
_CANONICAL_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


def csv_page(member_id: str, credits: Sequence[Credit]) -> str:
    """The CSV lines of :data:`EXPORT_COLUMNS` for one page of a member's credits: the
    same text as :func:`csv_text` of their rows, without the generic cell dispatch (the
    hot loop of an export)."""
    canonical = _CANONICAL_STAMP.fullmatch
    rows = []
    for credit in credits:
        # createdAt from its raw text when that is already in the one format: the parsed
        # value is that text's, so timestamp_text would give the same.
        text = credit.raw.get("createdAt")
        if type(text) is str and canonical(text):
            stamp = text[:19] + "Z" if text.endswith(".000Z") else text
        else:
            stamp = "" if credit.created_at is None else timestamp_text(credit.created_at)
        balance = credit.new_balance
        rows.append(
            [
                member_id,
                stamp,
                str(credit.amount),
                "" if balance is None else str(balance),
                credit.reason or "",
                credit.note or "",
                credit.id or "",
            ]
        )
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def jsonl_page(member_id: str, credits: Sequence[Credit]) -> str:
    """The JSON Lines rows of :data:`EXPORT_COLUMNS` for one page of a member's credits."""
    return "".join(export_line(member_id, credit) for credit in credits)


def jsonl_page_strings(member_id: str, credits: Sequence[Credit]) -> str:
    """:func:`jsonl_page` with the amounts as JSON strings."""
    rows = (money_as_text((member_id, *credit_row(credit))) for credit in credits)
    return "".join(json_line(_EXPORT_KEYS, row) for row in rows)


def page_encoder(fmt: str, *, amounts_as_strings: bool = False) -> tuple[str, PageEncoder]:
    """The header text (empty for JSON Lines) and the page encoder of ``csv`` or ``jsonl``
    (amounts as JSON strings with ``amounts_as_strings``)."""
    if fmt == "csv":
        return csv_text([EXPORT_COLUMNS]), csv_page
    return "", jsonl_page_strings if amounts_as_strings else jsonl_page


def row_encoder(fmt: str, columns: Sequence[str]) -> tuple[str, Callable[[Sequence[Row]], str]]:
    """The header text (empty for JSON Lines) and the row encoder of ``csv`` or ``jsonl``."""
    if fmt == "csv":
        return csv_text([columns]), csv_text
    return "", jsonl_encoder(columns)
