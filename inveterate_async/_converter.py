"""The one cattrs converter that turns API JSON into models, and its hooks.

JSON is parsed with every non-integer number as ``Decimal`` (see ``_json``), so
money reaches these hooks as ``int`` or ``Decimal`` and never passes through float.
A page's credits are built together (``structure_credits``), with the values the
per-entry ``Credit`` hook gives, which stays the reference and the source of errors.
"""

from __future__ import annotations

import re
from collections import deque
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from itertools import repeat
from operator import attrgetter
from typing import Any

import attrs
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
_slot_setters = {field.name: Credit.__dict__[field.name].__set__ for field in attrs.fields(Credit)}
_set_amount = _slot_setters["amount"]
_set_created_at = _slot_setters["created_at"]
_set_new_balance = _slot_setters["new_balance"]
_set_reason = _slot_setters["reason"]
_set_note = _slot_setters["note"]
_set_id = _slot_setters["id"]
_set_raw = _slot_setters["raw"]


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
        field = "id"
        entry_id = get("id")
        if entry_id is not None and type(entry_id) is not str:
            entry_id = _id_text(entry_id)
    except ValueError as exc:
        raise ValueError(f"entry {get('id')!r}, {field}: {exc}") from None
    credit: Credit = _new_credit(Credit)
    _set_amount(credit, amount)
    _set_created_at(credit, created_at)
    _set_new_balance(credit, new_balance)
    _set_reason(credit, reason)
    _set_note(credit, note)
    _set_id(credit, entry_id)
    _set_raw(credit, entry)
    return credit


def _id_text(value: Any) -> str:
    # Some APIs number their entries: an integer id is kept as its digits.
    if type(value) is int:
        return str(value)
    raise ValueError(f"not text: {value!r}")


converter = cattrs.Converter()
converter.register_structure_hook(Decimal, structure_decimal)
converter.register_structure_hook(datetime, structure_datetime)
# Hand-written because `raw` keeps the whole entry and the hot path of a
# million-entry ledger should not pay for generic dispatch.
converter.register_structure_hook(Credit, structure_credit)

_credit_hook = converter.get_structure_hook(Credit)


def structure_credits(entries: list[Any]) -> tuple[Credit, ...]:
    """The credits of one page, all or nothing, with the values of the ``Credit`` hook.

    An ordinary page of ``_BY_FIELD_FROM`` entries or more is built a field at a time
    over all its entries (each pass runs in C); a smaller page, or one with anything
    else (text amounts, epoch timestamps, a bad entry), goes entry by entry through the
    converter's ``Credit`` hook, which gives the same values and the exact error of the
    first bad entry.
    """
    credits = _page_by_field(entries) if len(entries) >= _BY_FIELD_FROM else None
    if credits is None:
        hook = _credit_hook
        credits = [hook(entry, Credit) for entry in entries]
    return tuple(credits)


# The field passes cost a fixed ~45,000 instructions a page (CPython 3.11), which pages
# of fewer than ~25 entries do not earn back: those go entry by entry.
_BY_FIELD_FROM = 32
_NoneType = type(None)
_DICT: frozenset[type] = frozenset({dict})
_MONEY: frozenset[type] = frozenset({Decimal, int})
_OPTIONAL_MONEY: frozenset[type] = frozenset({Decimal, int, _NoneType})
_TIMESTAMP: frozenset[type] = frozenset({str})
_TEXT: frozenset[type] = frozenset({str, _NoneType})
_get = dict.get
# Endless, so shared by every call: map() stops at the end of the entries.
_AMOUNT, _CREATED_AT, _NEW_BALANCE, _REASON, _NOTE, _ID = map(
    repeat, ("amount", "createdAt", "newBalance", "reason", "note", "id")
)
_is_finite = Decimal.is_finite
_tzinfo = attrgetter("tzinfo")
_consume = deque[object](maxlen=0).extend  # runs an iterator to its end


def _page_by_field(entries: list[Any]) -> list[Credit] | None:
    """The page's credits, made a field at a time; None if any value is not one the
    ``Credit`` hook would take as it is (or, for int money, as ``Decimal(value)``).

    Every value is read and checked before any ``Credit`` is made.
    """
    if not set(map(type, entries)) <= _DICT:
        return None
    amounts: list[Any] = list(map(_get, entries, _AMOUNT))
    new_balances: list[Any] = list(map(_get, entries, _NEW_BALANCE))
    stamps: list[Any] = list(map(_get, entries, _CREATED_AT))
    reasons: list[Any] = list(map(_get, entries, _REASON))
    notes: list[Any] = list(map(_get, entries, _NOTE))
    ids: list[Any] = list(map(_get, entries, _ID))
    amount_kinds = set(map(type, amounts))
    balance_kinds = set(map(type, new_balances))
    if not (
        amount_kinds <= _MONEY
        and balance_kinds <= _OPTIONAL_MONEY
        and set(map(type, stamps)) <= _TIMESTAMP
        and set(map(type, reasons)) <= _TEXT
        and set(map(type, notes)) <= _TEXT
        and set(map(type, ids)) <= _TEXT
    ):
        return None
    if int in amount_kinds:
        amounts = list(map(Decimal, amounts))
    if int in balance_kinds:
        new_balances = [None if value is None else Decimal(value) for value in new_balances]
    # The parsers only make finite Decimals; checked all the same (filter skips None and
    # zeros, which are finite).
    if not all(map(_is_finite, amounts)) or not all(map(_is_finite, filter(None, new_balances))):
        return None
    created_at: list[datetime] | None
    try:
        created_at = list(map(_fromisoformat, stamps))
    except ValueError:
        created_at = None
    if created_at is None or None in map(_tzinfo, created_at):
        # Naive times (UTC), or what Python 3.10's fromisoformat cannot read ("Z").
        try:
            created_at = list(map(_parse_iso, stamps))
        except ValueError:
            return None
    fields: dict[str, list[Any]] = {
        "amount": amounts,
        "created_at": created_at,
        "new_balance": new_balances,
        "reason": reasons,
        "note": notes,
        "id": ids,
        "raw": entries,
    }
    credits: list[Credit] = list(map(_new_credit, repeat(Credit, len(entries))))
    for name, set_slot in _slot_setters.items():  # every field of Credit (KeyError if not)
        _consume(map(set_slot, credits, fields[name]))
    return credits
