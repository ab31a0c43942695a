"""Async Python SDK for the Inveterate Public API v2.0 credits endpoints.

async with InveterateClient() as client:          # key from INVETERATE_API_KEY
    async for credit in client.iter_credits("42"):
        print(credit.created_at, credit.amount)
"""

from ._bulk import (
    AdjustmentReport,
    AdjustmentRow,
    AdjustmentState,
    CandidateEntry,
    CreditAdjustment,
    Journal,
)
from ._client import InveterateClient
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    InveterateError,
    JournalConflictError,
    JournalError,
    JournalLockedError,
    JournalWriteError,
    MemberError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    StreamAbortedError,
)
from ._export import (
    ExportCheckpoint,
    ExportError,
    ExportFailure,
    ExportOutputError,
    ExportProgress,
    ExportReport,
    ExportStateError,
    export_credits,
)
from ._logging import configure_from_environment as _configure_logging
from ._models import (
    Credit,
    CreditPage,
    CreditResult,
    LedgerPage,
    LedgerPosition,
    MemberFailure,
    MemberFinished,
)
from ._streaming.fanout import CreditStream
from ._version import __version__

_configure_logging()

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AdjustmentReport",
    "AdjustmentRow",
    "AdjustmentState",
    "AuthenticationError",
    "BadRequestError",
    "CandidateEntry",
    "Credit",
    "CreditAdjustment",
    "CreditPage",
    "CreditResult",
    "CreditStream",
    "ExportCheckpoint",
    "ExportError",
    "ExportFailure",
    "ExportOutputError",
    "ExportProgress",
    "ExportReport",
    "ExportStateError",
    "InvalidResponseError",
    "InveterateClient",
    "InveterateError",
    "Journal",
    "JournalConflictError",
    "JournalError",
    "JournalLockedError",
    "JournalWriteError",
    "LedgerPage",
    "LedgerPosition",
    "MemberError",
    "MemberFailure",
    "MemberFinished",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "StreamAbortedError",
    "__version__",
    "export_credits",
]
