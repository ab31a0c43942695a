"""Parsing JSON with every non-integer number read exactly as Decimal.

With the optional ``fast`` extra installed (msgspec), bodies are parsed by msgspec,
which hands each number's text to ``Decimal`` just as the standard library's
``parse_float`` does; without it, the standard library parses them. Both give the
same values: money never passes through float.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def loads_stdlib(body: bytes) -> Any:
    """Parse with the standard library (the reference behaviour)."""
    return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)


try:
    import msgspec
except ImportError:  # pragma: no cover - depends on the installed extras
    loads = loads_stdlib
else:
    _decoder = msgspec.json.Decoder(float_hook=Decimal)

    def loads_fast(body: bytes) -> Any:
        """Parse with msgspec; anything it refuses is left to the standard library."""
        try:
            return _decoder.decode(body)
        except msgspec.DecodeError:
            # e.g. a lone surrogate escape, which the stdlib accepts: same results either way.
            return loads_stdlib(body)

    loads = loads_fast
