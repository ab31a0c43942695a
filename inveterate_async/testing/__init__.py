"""Test helpers for code that uses ``inveterate_async``.

:class:`Sandbox` runs a fake Inveterate credits API on localhost (real HTTP, in-memory
ledgers, fault injection) and records every request it receives as a
:class:`RecordedRequest`. :meth:`Sandbox.start_in_thread` serves it from a thread of its
own (a :class:`ThreadedSandbox`), for synchronous tests and apps that run their own loop.
:class:`ManualClock` lets a test move time by hand.

The package deliberately imports nothing from the rest of ``inveterate_async``: it has its
own JSON, URL and money handling, so a bug in the client cannot be mirrored (and hidden) by
the server it is tested against.
"""

from ._clock import ManualClock
from ._server import Sandbox
from ._thread import ThreadedSandbox
from ._wire import RecordedRequest

__all__ = ["ManualClock", "RecordedRequest", "Sandbox", "ThreadedSandbox"]
