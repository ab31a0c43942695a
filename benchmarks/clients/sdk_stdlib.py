"""The SDK's standard-library fallback: msgspec unimportable, JSON parsed by ``json``.

What users get where msgspec is not installed (it is a dependency on CPython only).
"""

from __future__ import annotations

import sys

# Importing msgspec now fails, exactly as when it is not installed.
sys.modules["msgspec"] = None  # type: ignore[assignment]

from benchmarks.clients.sdk import fetch  # noqa: E402

__all__ = ["fetch"]
