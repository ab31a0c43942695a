"""The fast (msgspec) and standard-library JSON paths read every body the same way."""

import importlib
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inveterate_async._http import codec as _json


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


# False in the CI leg run with PYTHONPATH=tests/no_msgspec (see tests/no_msgspec/msgspec.py).
MSGSPEC = _importable("msgspec")
requires_msgspec = pytest.mark.skipif(not MSGSPEC, reason="msgspec cannot be imported")


def test_the_fast_parser_is_used_exactly_when_msgspec_imports() -> None:
    if MSGSPEC:
        assert _json.loads is _json.loads_fast
    else:
        # Users without msgspec get the standard library, and nothing msgspec-only.
        assert _json.loads is _json.loads_stdlib
        assert not hasattr(_json, "loads_fast")
    assert _json.loads(b'{"amount": 10.10}') == {"amount": Decimal("10.10")}


numbers_text = st.one_of(
    st.integers().map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(
        lambda d: format(d, "f") if "E" not in str(d) else str(d)
    ),
    st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.text() | numbers_text.map(lambda t: ("num", t)),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


def render(value: Any) -> str:
    """JSON text keeping each number's exact spelling."""
    if isinstance(value, tuple):
        return str(value[1])
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@requires_msgspec
@given(json_values)
def test_both_parsers_agree_exactly(value: Any) -> None:
    text = render(value).encode()
    fast, stdlib = _json.loads_fast(text), _json.loads_stdlib(text)
    assert fast == stdlib
    assert repr(fast) == repr(stdlib)  # same types and the same Decimal digits


@requires_msgspec
@pytest.mark.parametrize(
    "text",
    [b'{"amount": 10.10}', b"12345678901234567890123", b"1E400", b"-0.0", b'"\\ud800"', b"[]"],
)
def test_edge_cases_agree(text: bytes) -> None:
    assert repr(_json.loads_fast(text)) == repr(_json.loads_stdlib(text))


@requires_msgspec
@pytest.mark.parametrize("text", [b"NaN", b"[Infinity]", b"{", b"1.", b"\xff"])
def test_both_refuse_invalid_json(text: bytes) -> None:
    for loads in (_json.loads_fast, _json.loads_stdlib):
        with pytest.raises(ValueError):  # noqa: PT011 - the two parsers word it differently
            loads(text)
