"""Test helpers for code that uses ``inveterate_async``.

:class:`Sandbox` runs a fake Inveterate credits API on localhost (real HTTP, in-memory
ledgers, fault injection) and records every request it receives as a
:class:`RecordedRequest`.
"""

from inveterate_async.testing._sandbox import RecordedRequest, Sandbox

__all__ = ["RecordedRequest", "Sandbox"]
