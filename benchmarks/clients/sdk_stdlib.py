"""The SDK as installed without the ``fast`` extra: JSON parsed by the standard library."""

from __future__ import annotations

import sys

# Importing msgspec now fails, exactly as when it is not installed.
sys.modules["msgspec"] = None  # type: ignore[assignment]

from benchmarks.clients.sdk import fetch  # noqa: E402

__all__ = ["fetch"]
