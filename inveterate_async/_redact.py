"""Scrubbing the API key out of anything that could be shown: texts, bodies, data."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain
from typing import Any
from urllib.parse import quote

from multidict import CIMultiDict, CIMultiDictProxy

REDACTED = "[redacted]"


def elided(value: object) -> str:
    """A cursor as a repr shows it: its first characters and its length, never all of it
    (a server that echoes the key in its cursors would otherwise show the key)."""
    if not isinstance(value, str) or len(value) <= 8:
        return repr(value)
    return f"<{len(value)} chars {value[:6]!r}…>"


class Redactor:
    """Replaces every occurrence of a secret (plain or percent-encoded) with a marker."""

    __slots__ = ("_secrets", "_secrets_bytes")

    def __init__(self, secret: str) -> None:
        forms = {secret, quote(secret, safe=""), quote(secret)}
        # Longest first, so a longer form is not half-replaced by a shorter one.
        self._secrets = sorted(forms, key=len, reverse=True)
        self._secrets_bytes = [s.encode() for s in self._secrets]

    def __repr__(self) -> str:
        return "Redactor(...)"

    def text(self, value: str) -> str:
        """The text with the secret replaced."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def reveals(self, value: str) -> bool:
        """Whether the text holds the secret (in any form :meth:`text` scrubs)."""
        return any(secret in value for secret in self._secrets)

    def bytes(self, value: bytes) -> bytes:
        """The bytes with the secret replaced."""
        for secret in self._secrets_bytes:
            if secret in value:
                value = value.replace(secret, REDACTED.encode())
        return value

    def headers(self, headers: CIMultiDictProxy[str]) -> CIMultiDictProxy[str]:
        """The headers, scrubbed; the same object when the secret is not in them."""
        # Checked on every response: one joined text, searched once per form of the
        # secret (which holds no line break, so it cannot span two names or values).
        text = "\n".join(chain(headers.keys(), headers.values()))
        for secret in self._secrets:
            if secret in text:
                return self.any(headers)  # type: ignore[no-any-return]
        return headers

    def any(self, value: Any) -> Any:
        """Any value shown to a user with the secret replaced: text, bytes, JSON data
        (keys included), headers; other values are returned as they are."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.bytes(value)
        if isinstance(value, (CIMultiDictProxy, CIMultiDict)):
            return CIMultiDictProxy(
                CIMultiDict((self.text(k), self.text(v)) for k, v in value.items())
            )
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.any(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.any(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.any(v) for v in value)
        return value
