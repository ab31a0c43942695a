"""The one cattrs converter that turns API JSON into models, and its hooks.

JSON is parsed with ``parse_float=Decimal``, so money reaches these hooks as
``int`` or ``Decimal`` and never passes through float.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import cattrs

from ._models import Credit
from ._money import DECIMAL_TEXT

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Python 3.10's fromisoformat takes neither "Z" nor fractions other than 3 or 6 digits.
_ISO_FRACTION = re.compile(r"(\.\d+)(?=[+-]\d\d:?\d\d$|$)")


def structure_decimal(value: Any, _: Any = None) -> Decimal:
    """Read money: a JSON number (int or Decimal) or decimal text, exactly."""
    kind = type(value)
    if kind is Decimal:
        if value.is_finite():
            return value  # type: ignore[no-any-return]
    elif kind is int or (kind is str and DECIMAL_TEXT.fullmatch(value)):
        return Decimal(value)
    raise ValueError(f"not a decimal number: {value!r}")


def structure_datetime(value: Any, _: Any = None) -> datetime:
    """Read a timestamp: ISO 8601 text or epoch milliseconds; naive means UTC."""
    kind = type(value)
    if kind is str:
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = datetime.fromisoformat(_ISO_FRACTION.sub(_six_digit_fraction, text))
    elif kind is int or kind is Decimal:
        try:
            return _EPOCH + timedelta(microseconds=int(value * 1000))
        except (OverflowError, InvalidOperation) as exc:
            raise ValueError(f"epoch milliseconds out of range: {value!r}") from exc
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _six_digit_fraction(match: re.Match[str]) -> str:
    return match.group(1)[:7].ljust(7, "0")


def _optional_text(entry: dict[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is None or type(value) is str:
        return value
    raise ValueError(f"{key} is not text: {value!r}")


def structure_credit(entry: Any, _: Any = None) -> Credit:
    """Build a :class:`Credit` from one ledger entry (a JSON object)."""
    if type(entry) is not dict:
        raise ValueError(f"entry is not an object: {entry!r}")
    if "amount" not in entry:
        raise ValueError("entry has no amount")
    try:
        amount = structure_decimal(entry["amount"])
    except ValueError as exc:
        raise ValueError(f"amount: {exc}") from None
    created_at = entry.get("createdAt")
    new_balance = entry.get("newBalance")
    try:
        return Credit(
            amount,
            None if created_at is None else structure_datetime(created_at),
            None if new_balance is None else structure_decimal(new_balance),
            _optional_text(entry, "reason"),
            _optional_text(entry, "note"),
            entry,
        )
    except ValueError as exc:
        raise ValueError(f"entry {entry.get('id')!r}: {exc}") from None


converter = cattrs.Converter()
converter.register_structure_hook(Decimal, structure_decimal)
converter.register_structure_hook(datetime, structure_datetime)
# Hand-written because `raw` keeps the whole entry and the hot path of a
# million-entry ledger should not pay for generic dispatch.
converter.register_structure_hook(Credit, structure_credit)
