"""The export's page encoders write exactly what the generic row encoders write."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from inveterate_async import Credit
from inveterate_async._converter import structure_credit
from inveterate_async._export.rows import (
    EXPORT_COLUMNS,
    credit_row,
    csv_page,
    csv_text,
    jsonl_page,
    row_encoder,
)

STAMPS = [
    "2024-03-01T12:00:00.000Z",
    "2024-03-01T12:00:00Z",
    "2024-03-01T12:00:00.250Z",
    "2024-03-01T12:00:00.123456Z",
    "2024-03-01T14:00:00+02:00",
    "2024-03-01T12:00:00.000+00:00",
    "0999-03-01T12:00:00Z",
]


def credits() -> list[Credit]:
    entries: list[dict[str, Any]] = [
        {"id": f"cr_{n}", "amount": "1.50", "createdAt": stamp, "newBalance": "10", "note": "a"}
        for n, stamp in enumerate(STAMPS)
    ]
    entries += [
        {"amount": "-2", "createdAt": None, "reason": "", "note": 'VIP "gold", tier\n2'},
        {"id": "x", "amount": "0.10", "newBalance": None, "reason": "manual", "note": None},
    ]
    return [structure_credit(json.loads(json.dumps(entry))) for entry in entries]


def test_a_csv_page_is_the_csv_text_of_its_rows() -> None:
    page = credits()
    rows = [("6100", *credit_row(credit)) for credit in page]
    assert csv_page("6100", page) == csv_text(rows)


def test_a_jsonl_page_is_the_jsonl_text_of_its_rows() -> None:
    page = credits()
    _, encode = row_encoder("jsonl", EXPORT_COLUMNS)
    assert jsonl_page("6100", page) == encode([("6100", *credit_row(credit)) for credit in page])


@pytest.mark.parametrize("hours", [0, 5, -3])
def test_a_created_at_without_raw_text_is_written_in_the_one_format(hours: int) -> None:
    moment = datetime(2024, 3, 1, 12, tzinfo=timezone(timedelta(hours=hours)))
    credit = Credit(amount=Decimal(1), created_at=moment)
    assert csv_page("1", [credit]) == csv_text([("1", *credit_row(credit))])
