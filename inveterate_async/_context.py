"""The one choke point every error raised by a request passes through.

In the spirit of httpx's ``request_context``: whatever raised it, the error leaves with
the request's context filled in and the API key scrubbed out of all of it.
"""

from __future__ import annotations

from ._errors import InveterateError
from ._exchange import PreparedRequest, Response
from ._redact import Redactor


class ScrubbedCause(Exception):
    """Stands in for a cause whose text held the API key (the text is kept, scrubbed)."""


def add_request_context(
    error: InveterateError,
    request: PreparedRequest | None,
    response: Response | None,
    redactor: Redactor,
) -> None:
    """The one choke point: give ``error`` its request's context and scrub the key.

    Every :class:`InveterateError` raised while making a request passes through here,
    so no error path can forget either. Causes whose text holds the key are replaced
    by a scrubbed stand-in.
    """
    if request is not None:
        error.add_context(request, response)
    error.redact(redactor)
    cause = error.__cause__
    if cause is not None and not isinstance(cause, InveterateError):
        text = f"{cause!s} {cause!r}"
        if redactor.text(text) != text:
            error.__cause__ = ScrubbedCause(f"{type(cause).__name__}: {redactor.text(str(cause))}")
    error.__context__ = error.__cause__
    error.__suppress_context__ = True
