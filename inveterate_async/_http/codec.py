"""Parsing JSON with every non-integer number read exactly as Decimal.

msgspec parses bodies when it is installed (it is a dependency on CPython), handing
each number's text to ``Decimal`` just as the standard library's ``parse_float``
does; without it, the standard library parses them. Both give the same values: money
never passes through float. Any body either cannot parse, nesting too deep included,
raises ``ValueError``.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads(..., parse_float=...) would build a new decoder per call.
_stdlib_decode = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant).decode


def loads_stdlib(body: bytes) -> Any:
    """Parse with the standard library (the reference behaviour)."""
    try:
        return _stdlib_decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None


try:
    import msgspec
except ImportError:
    loads = loads_stdlib
else:
    _decoder = msgspec.json.Decoder(float_hook=Decimal)

    def loads_fast(body: bytes) -> Any:
        """Parse with msgspec; anything it refuses is left to the standard library."""
        try:
            return _decoder.decode(body)
        except RecursionError:
            raise ValueError("JSON is nested too deeply") from None
        except msgspec.DecodeError:
            # e.g. a lone surrogate escape, which the stdlib accepts: same results either way.
            return loads_stdlib(body)

    loads = loads_fast
