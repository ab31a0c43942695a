"""Scrubbing the API key out of anything that could be shown: texts, bodies, data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

REDACTED = "[redacted]"


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

    def bytes(self, value: bytes) -> bytes:
        """The bytes with the secret replaced."""
        for secret in self._secrets_bytes:
            if secret in value:
                value = value.replace(secret, REDACTED.encode())
        return value

    def data(self, value: Any) -> Any:
        """A JSON value with the secret replaced in every string, keys included."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        return value

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """A plain copy of response headers with the secret replaced in values."""
        return {name: self.text(value) for name, value in headers.items()}
