"""Amounts typed on the command line: one strict form, checked before anything is sent.

Shared by every command that writes credit (``credits add``, ``credits apply``).
"""

from __future__ import annotations

import re
from decimal import Decimal

# ASCII digits only: Python's \d would also take full-width and other scripts' digits.
_AMOUNT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")

AMOUNT_FORM = "a plain decimal such as 10.00 or -2.50 (digits 0-9, an optional leading minus)"


def parse_amount(text: str) -> Decimal:
    """The exact value of an AMOUNT written as ``-?digits(.digits)?``.

    No exponent (``1e3``), no ``+``, no leading or trailing dot (``.5``, ``5.``), no spaces,
    separators or non-ASCII digits, and not zero. The Decimal keeps the digits as typed
    (``"10.00"`` stays ``10.00``).

    :param text: the AMOUNT argument.
    :returns: its exact value.
    :raises ValueError: with a message saying what is accepted.
    """
    if not _AMOUNT.fullmatch(text):
        raise ValueError(f"{text!r} is not {AMOUNT_FORM}")
    value = Decimal(text)
    if value.is_zero():
        raise ValueError(f"{text!r} is zero: nothing to add or remove")
    return value
