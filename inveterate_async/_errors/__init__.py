"""Every exception the SDK raises, and the one place errors get their context.

::

    InveterateError
    ├── APIConnectionError      no HTTP answer (network failure, client closed)
    │   └── APITimeoutError     an attempt's timeout or the call's deadline ran out
    ├── APIStatusError          a non-2xx answer: status, message, data, headers, body
    │   ├── BadRequestError     400: nothing was applied (also a wrong key, per the API)
    │   ├── AuthenticationError 401
    │   ├── PermissionDeniedError 403
    │   ├── NotFoundError       404
    │   ├── RateLimitError      429, with ``retry_after``
    │   └── ServerError         5xx
    ├── InvalidResponseError    a 2xx answer whose body cannot be read
    │   └── PaginationError     the API sent a cursor it had sent before (a loop)
    ├── MemberError             one member of ``iter_credits_many`` failed
    ├── StreamAbortedError      ``iter_credits_many`` stopped: every member would fail
    └── JournalError            a bulk-adjustment journal cannot be used
        ├── JournalLockedError  another process is applying from the same journal
        ├── JournalWriteError   the journal failed after adjustments were sent
        └── JournalConflictError a ref is already in the journal with other content

``APIConnectionError``, ``ServerError`` and ``InvalidResponseError`` carry
``outcome_unknown``: True for a write that may have been applied.

Errors raised by a request pass through one choke point (``_context``), which fills
in the request and response they belong to and scrubs the API key out of all of them.
Every error is one line in ``str()``, and pickles to an error of the same type with the
same attributes, ``str()`` and ``repr()``.

The errors of a call are in ``api``, those of the jobs (streams, journals) in ``jobs``;
this package is where the rest of the SDK imports them from. Bottom layer: it imports
only ``_exchange`` (and ``_redact`` for typing).
"""

from .api import (
    STATUS_ERRORS,
    UNKNOWN_OUTCOME_HINT,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    InveterateError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    one_line,
)
from .jobs import (
    JournalConflictError,
    JournalError,
    JournalLockedError,
    JournalWriteError,
    MemberError,
    StreamAbortedError,
)

__all__ = [
    "STATUS_ERRORS",
    "UNKNOWN_OUTCOME_HINT",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "InvalidResponseError",
    "InveterateError",
    "JournalConflictError",
    "JournalError",
    "JournalLockedError",
    "JournalWriteError",
    "MemberError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "StreamAbortedError",
    "one_line",
]
