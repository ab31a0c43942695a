"""The bulk layer: ``apply_credits`` and its journal.

The member's ledger is the truth and the journal its durable cache: each adjustment is
tagged with its ref in the note, a member's ledger is read before its first send, and
every outcome the API leaves uncertain is decided by the ledger, never guessed.

This package may import the layers below the client facade (``_http``, ``_request``,
``_errors``, ``_models`` and the other bottom modules), never ``_client`` or anything
above it: it talks to the API through :class:`~.api.CreditsAPI`, three calls.

Modules: ``adjustments`` (what to apply, states, the report), ``options``, ``tags``,
``api``; the journal: ``lock``, ``journal_open``, ``journal_file``, ``rows``, ``merge``,
``stored``, ``journal``; the run: ``run``, ``plan`` (dry runs), ``context``, ``members``,
``ledger`` (tagged matching), ``lookalike`` (untagged matching), ``sending``,
``send_pass``, ``reconcile``.
"""

from .adjustments import (
    AdjustmentReport,
    AdjustmentRow,
    AdjustmentState,
    CandidateEntry,
    CreditAdjustment,
)
from .api import CreditsAPI
from .journal import Journal
from .options import BulkOptions
from .run import apply_credits

__all__ = [
    "AdjustmentReport",
    "AdjustmentRow",
    "AdjustmentState",
    "BulkOptions",
    "CandidateEntry",
    "CreditAdjustment",
    "CreditsAPI",
    "Journal",
    "apply_credits",
]
