"""The sandbox's in-memory ledgers: credits, balances, seeded members and page cursors."""

import decimal
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs

from ._wire import BadRequest, compact_json

CursorFactory = Callable[[str, Mapping[str, Any]], str | Mapping[str, Any]]

_CLOCK_START = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
# Balances are exact sums; an amount that would force rounding is rejected instead.
_MONEY = decimal.Context(prec=50, traps=[decimal.Inexact, decimal.InvalidOperation])
_CREDIT_KEYS = frozenset({"amount", "note", "reason", "createdAt"})
_DTO_KEYS = frozenset({"amount", "note", "force"})

_SEED_GRANTS = ("5.00", "10.00", "12.50", "25.00", "7.75", "15.00", "3.99")
_SEED_REDEMPTIONS = ("2.50", "5.00", "10.00", "0.99")
_SEED_GRANT_REASONS = ("purchase reward", "goodwill", "manual adjustment", "birthday bonus")
_SEED_NOTES = (
    "Thanks for shopping with us",
    "Merci — fidélité",
    "Geburtstagsgrüße 🎂",
    "Order #1001/A & more",
    "顧客サービス",
)


@attrs.frozen
class NewCredit:
    """A credit to append, before it gets its id and balance."""

    amount: Decimal
    reason: str
    note: str | None
    created_at: str | None = None


class Ledgers:
    """Every member's entries, oldest first, and the cursors issued into them."""

    def __init__(self) -> None:
        self._entries: dict[str, list[dict[str, Any]]] = {}
        # Per member: cursor text issued by this sandbox -> index of its entry in the ledger.
        self._cursors: dict[str, dict[str, int]] = {}
        # Entry ids and default timestamps count across all members.
        self._entry_count = 0
        # Per member: index of an entry -> the clock reading from which GETs show it.
        self._hidden: dict[str, dict[int, float]] = {}

    def entries(self, member: str) -> list[dict[str, Any]]:
        """Copies of a member's entries, oldest first (empty for an unknown member)."""
        return [dict(entry) for entry in self._entries.get(member, [])]

    def balance(self, member: str) -> Decimal:
        """A member's current balance (0 for an unknown member)."""
        ledger = self._entries.get(member)
        return ledger[-1]["newBalance"] if ledger else Decimal(0)

    def append(
        self, member: str, credits: list[NewCredit], *, visible_at: float | None = None
    ) -> list[dict[str, Any]]:
        """Add credits to a member's ledger, all or none.

        :param visible_at: the clock reading before which :meth:`page` leaves the new
            entries out (None: visible at once).
        :returns: the created entries, as stored.
        :raises ValueError: if a balance would be out of range; nothing is added then.
        """
        ledger = self._entries.setdefault(member, [])
        balance = self.balance(member)
        # Build all entries first so that a failure leaves the ledger untouched.
        created = []
        for number, credit in enumerate(credits, start=self._entry_count + 1):
            try:
                balance = _MONEY.add(balance, credit.amount)
            except decimal.DecimalException:
                raise ValueError("amount is out of range") from None
            created_at = _CLOCK_START + timedelta(minutes=number - 1)
            created.append(
                {
                    "id": f"cr_{number:06d}",
                    "amount": credit.amount,
                    "createdAt": credit.created_at
                    or created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "newBalance": balance,
                    "reason": credit.reason,
                    "note": credit.note,
                }
            )
        self._entry_count += len(created)
        if visible_at is not None:
            hidden = self._hidden.setdefault(member, {})
            hidden.update(dict.fromkeys(range(len(ledger), len(ledger) + len(created)), visible_at))
        ledger.extend(created)
        return created

    def seed_members(
        self, count: int, *, credits_per_member: int, seed: int, prefix: str
    ) -> list[str]:
        """Give members ``f"{prefix}1"`` to ``f"{prefix}{count}"`` realistic, deterministic credits.

        :returns: the member ids.
        """
        rng = random.Random(seed)
        ids = [f"{prefix}{n}" for n in range(1, count + 1)]
        for member in ids:
            balance = self.balance(member)
            credits = []
            for _ in range(credits_per_member):
                note = rng.choice(_SEED_NOTES) if rng.random() < 0.3 else None
                if balance > 0 and rng.random() < 0.3:
                    wanted = Decimal(rng.choice(_SEED_REDEMPTIONS))
                    credit = NewCredit(-min(wanted, balance), "redemption", note)
                else:
                    amount = Decimal(rng.choice(_SEED_GRANTS))
                    credit = NewCredit(amount, rng.choice(_SEED_GRANT_REASONS), note)
                balance += credit.amount
                credits.append(credit)
            self.append(member, credits)
        return ids

    def page(
        self,
        member: str,
        after: str | None,
        limit: int,
        cursor_factory: CursorFactory | None,
        now: float,
    ) -> tuple[list[dict[str, Any]], str | Mapping[str, Any] | None]:
        """Up to ``limit`` visible entries after the one ``after`` points at.

        :param after: a cursor text issued for ``member`` (None: from the start).
        :param cursor_factory: makes the next cursor; None for the default form.
        :param now: the clock reading that decides which entries are visible yet.
        :returns: the entries, as stored, and the cursor to the rest (None at the end).
        :raises BadRequest: if ``after`` was not issued for ``member``.
        """
        ledger = self._entries.get(member, [])
        start = 0
        if after is not None:
            index = self._cursors.get(member, {}).get(after)
            if index is None:
                raise BadRequest("Invalid lastCreditEntry")
            start = index + 1
        hidden = self._still_hidden(member, now)
        # Scans past the page for one more visible entry, to know whether a cursor is due.
        indexes = []
        for index in range(start, len(ledger)):
            if index not in hidden:
                indexes.append(index)
                if len(indexes) > limit:
                    break
        shown = indexes[:limit]
        cursor = None
        if len(indexes) > limit:
            cursor = self._issue_cursor(member, ledger, shown[-1], cursor_factory)
        return [ledger[index] for index in shown], cursor

    def _still_hidden(self, member: str, now: float) -> set[int]:
        hidden = self._hidden.get(member)
        if not hidden:
            return set()
        for index, visible_at in list(hidden.items()):
            if visible_at <= now:
                del hidden[index]
        return set(hidden)

    def _issue_cursor(
        self,
        member: str,
        ledger: list[dict[str, Any]],
        index: int,
        cursor_factory: CursorFactory | None,
    ) -> str | Mapping[str, Any]:
        entry = ledger[index]
        cursor: str | Mapping[str, Any]
        if cursor_factory is None:
            created_at: str = entry["createdAt"]
            if created_at.endswith("Z"):
                created_at = created_at[:-1] + "+00:00"
            sort_key = f"{created_at}#{entry['id']}"
            cursor = compact_json({"pk": f"member#{member}", "sk": sort_key})
        else:
            cursor = cursor_factory(member, dict(entry))
        text = cursor if isinstance(cursor, str) else compact_json(dict(cursor))
        self._cursors.setdefault(member, {})[text] = index
        return cursor


def member_key(customer_id: str | int) -> str:
    """The ledger key of a member id: ``42`` and ``"42"`` are the same member.

    :raises TypeError: if the id is not a str or an int.
    :raises ValueError: if it is empty.
    """
    if isinstance(customer_id, bool) or not isinstance(customer_id, (str, int)):
        raise TypeError("customer_id must be a str or an int")
    member = str(customer_id)
    if not member:
        raise ValueError("customer_id must not be empty")
    return member


def credit_from_user(entry: Decimal | str | int | Mapping[str, Any]) -> NewCredit:
    """Check one entry given to :meth:`Sandbox.add_credits`.

    :raises TypeError: for a float amount or a value of the wrong type.
    :raises ValueError: for a zero or non-decimal amount, a missing amount or unknown keys.
    """
    if not isinstance(entry, Mapping):
        return NewCredit(_to_amount(entry), "manual adjustment", None)
    unknown = set(entry) - _CREDIT_KEYS
    if unknown:
        raise ValueError(f"unknown credit keys: {sorted(unknown)}")
    if "amount" not in entry:
        raise ValueError("a credit mapping needs an 'amount'")
    return NewCredit(
        amount=_to_amount(entry["amount"]),
        reason=_optional_str(entry, "reason") or "manual adjustment",
        note=_optional_str(entry, "note"),
        created_at=_optional_str(entry, "createdAt"),
    )


def credit_from_dto(payload: object) -> tuple[Decimal, str | None]:
    """Check a POST body against the API's CreditDto.

    :returns: its amount and note.
    :raises BadRequest: for every violation.
    """
    if not isinstance(payload, dict):
        raise BadRequest("Body must be a JSON object")
    unknown = set(payload) - _DTO_KEYS
    if unknown:
        raise BadRequest(f"Unknown properties: {', '.join(sorted(unknown))}")
    if "amount" not in payload:
        raise BadRequest("amount is required")
    amount = payload["amount"]
    if not isinstance(amount, Decimal):
        raise BadRequest("amount must be a number")
    if amount == 0:
        raise BadRequest("amount can't be zero")
    note = payload.get("note")
    if "note" in payload and not isinstance(note, str):
        raise BadRequest("note must be a string")
    if "force" in payload and not isinstance(payload["force"], bool):
        raise BadRequest("force must be a boolean")
    return amount, note


def _to_amount(value: object) -> Decimal:
    if isinstance(value, (bool, float)):
        raise TypeError(f"amount must be a Decimal, int or decimal str, not {value!r}")
    if isinstance(value, (int, str)):
        try:
            value = Decimal(value)
        except decimal.InvalidOperation:
            raise ValueError(f"amount is not a decimal number: {value!r}") from None
    if not isinstance(value, Decimal):
        raise TypeError(f"amount must be a Decimal, int or decimal str, not {value!r}")
    if not value.is_finite() or value == 0:
        raise ValueError(f"amount must be finite and non-zero, not {value}")
    return value


def _optional_str(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be a str")
    return value
