"""The export layer: many members' credit ledgers into one CSV or JSON Lines file, in the
order of their ids, atomically, and resumable after any stop (:func:`export_credits`).

Members are read concurrently but written one after the other (``ordered``), the pages of
the members read ahead waiting in a ``spool``; the output is a partial file renamed into
place at the end (``target``, ``files``), and a SQLite ``state`` file records checkpoints
a resume starts from, so that the final file is the same bytes however often the export
was stopped. ``rows`` is the one row encoding, shared with the CLI and the cluster.

What it may import: the bottom modules (``_errors``, ``_models``, ``_converter``,
``_money``, ``_config``, ``_redact``, ``_logging``, ``_exchange``, ``_context``),
``_streaming``, ``_pagination`` and ``_client`` (the facade); never ``cli``, ``cluster``,
``_bulk`` or ``testing``, and not aiohttp, click or rich.
"""

from .errors import ExportError, ExportOutputError, ExportStateError
from .export import ExportFormat, export_credits
from .report import ExportCheckpoint, ExportProgress, ExportReport
from .state import ExportFailure

__all__ = [
    "ExportCheckpoint",
    "ExportError",
    "ExportFailure",
    "ExportFormat",
    "ExportOutputError",
    "ExportProgress",
    "ExportReport",
    "ExportStateError",
    "export_credits",
]
