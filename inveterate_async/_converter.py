"""The one cattrs converter that turns API JSON into models, and its hooks.

JSON is parsed with every non-integer number as ``Decimal`` (see ``_json``), so
money reaches these hooks as ``int`` or ``Decimal`` and never passes through float.
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
_fromisoformat = datetime.fromisoformat
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
        return _parse_iso(value)
    if kind is int or kind is Decimal:
        try:
            return _EPOCH + timedelta(microseconds=int(value * 1000))
        except (OverflowError, InvalidOperation) as exc:
            raise ValueError(f"epoch milliseconds out of range: {value!r}") from exc
    raise ValueError(f"not a timestamp: {value!r}")


def _parse_iso(text: str) -> datetime:
    try:
        parsed = _fromisoformat(text)
    except ValueError:
        parsed = _fromisoformat_py310(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _fromisoformat_py310(text: str) -> datetime:
    # Python 3.10's fromisoformat takes neither "Z" nor fractions other than 3 or 6 digits.
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(_ISO_FRACTION.sub(_six_digit_fraction, text))
    except ValueError:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}") from None


def _six_digit_fraction(match: re.Match[str]) -> str:
    return match.group(1)[:7].ljust(7, "0")


# A million-entry ledger builds a million Credits: fill the slots directly rather
# than through the frozen class's __init__ (which sets each through
# object.__setattr__), about 40% less time per credit. Same fields, same values.
_new_credit = object.__new__
_set_amount = Credit.__dict__["amount"].__set__
_set_created_at = Credit.__dict__["created_at"].__set__
_set_new_balance = Credit.__dict__["new_balance"].__set__
_set_reason = Credit.__dict__["reason"].__set__
_set_note = Credit.__dict__["note"].__set__
_set_raw = Credit.__dict__["raw"].__set__


def structure_credit(entry: Any, _: Any = None) -> Credit:
    """Build a :class:`Credit` from one ledger entry (a JSON object)."""
    if type(entry) is not dict:
        raise ValueError(f"entry is not an object: {entry!r}")
    get = entry.get
    amount = get("amount")
    field = "amount"  # named in the error message if a conversion fails
    try:
        if type(amount) is not Decimal or not amount.is_finite():
            if amount is None:
                raise ValueError("missing (entry has no amount)")
            amount = structure_decimal(amount)
        field = "createdAt"
        created_at = get("createdAt")
        if type(created_at) is str:
            created_at = _parse_iso(created_at)
        elif created_at is not None:
            created_at = structure_datetime(created_at)
        field = "newBalance"
        new_balance = get("newBalance")
        if new_balance is not None and (
            type(new_balance) is not Decimal or not new_balance.is_finite()
        ):
            new_balance = structure_decimal(new_balance)
        field = "reason"
        reason = get("reason")
        if reason is not None and type(reason) is not str:
            raise ValueError(f"not text: {reason!r}")
        field = "note"
        note = get("note")
        if note is not None and type(note) is not str:
            raise ValueError(f"not text: {note!r}")
    except ValueError as exc:
        raise ValueError(f"entry {get('id')!r}, {field}: {exc}") from None
    credit: Credit = _new_credit(Credit)
    _set_amount(credit, amount)
    _set_created_at(credit, created_at)
    _set_new_balance(credit, new_balance)
    _set_reason(credit, reason)
    _set_note(credit, note)
    _set_raw(credit, entry)
    return credit


converter = cattrs.Converter()
converter.register_structure_hook(Decimal, structure_decimal)
converter.register_structure_hook(datetime, structure_datetime)
# Hand-written because `raw` keeps the whole entry and the hot path of a
# million-entry ledger should not pay for generic dispatch.
converter.register_structure_hook(Credit, structure_credit)

_credit_hook = converter.get_structure_hook(Credit)


def structure_credits(entries: list[Any]) -> tuple[Credit, ...]:
    """The credits of one page, all or nothing, through the converter's ``Credit`` hook."""
    hook = _credit_hook
    return tuple([hook(entry, Credit) for entry in entries])
