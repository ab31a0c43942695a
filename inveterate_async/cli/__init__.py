"""The ``inveterate`` command-line interface (install with the ``cli`` extra).

Needs click and rich: ``pip install "inveterate-async[cli]"``. The core package never
imports this module, so the SDK itself works without them.
"""

from ._app import app, main
from ._serve import serve_sandbox

__all__ = ["app", "main", "serve_sandbox"]
