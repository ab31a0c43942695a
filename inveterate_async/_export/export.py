""":func:`export_credits`: many members' ledgers into one CSV or JSON Lines file."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection, Iterable
from typing import BinaryIO, Literal

from .._client import InveterateClient
from .._streaming.failfast import DEFAULT_ABORT_AFTER
from .files import ExportFiles
from .ordered import OrderedExport
from .report import ExportProgress, ExportReport
from .rows import page_encoder
from .target import OutputTarget

ExportFormat = Literal["csv", "jsonl"]
IdSource = Iterable[str | int] | AsyncIterable[str | int]

_JSONL_SUFFIXES = (".jsonl", ".ndjson")


async def export_credits(
    client: InveterateClient,
    member_ids: IdSource,
    out: str | os.PathLike[str] | BinaryIO,
    *,
    format: ExportFormat | None = None,
    state: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    concurrency: int = 8,
    page_size: int | None = None,
    abort_after: int | None = DEFAULT_ABORT_AFTER,
    on_progress: Callable[[ExportProgress], None] | None = None,
    amounts_as_strings: bool = False,
) -> ExportReport:
    """Export the credit ledgers of many members to one CSV or JSON Lines file.

    One row per credit: ``member_id, created_at, amount, new_balance, reason, note, id``
    (amounts with their exact digits). Members are read ``concurrency`` at a time but
    written in the order of ``member_ids``, each one's credits together in ledger order;
    an id given twice is exported once. A member that fails (after the client's retries)
    has none of its credits in the file and is listed in the report's ``failures``.

    A file is written as a hidden partial file beside it (``.NAME.partial``) and renamed
    into place only when every member was read: a stopped export never leaves a file
    that looks finished. With ``state``, the export keeps checkpoints in that SQLite file
    (four a second, and when it stops): called again with the same arguments after a
    crash, a ``kill -9`` or a cancellation, it resumes where it stopped, and the file ends
    byte for byte as if it had never stopped. Without ``state``, a stopped export removes
    its partial file.

    :param client: the client to read with.
    :param member_ids: the ids (``str`` or ``int``), an iterable or async iterable read
        lazily; a resumed export must be given the same ids in the same order.
    :param out: the file to write, or a binary stream to write to as the rows come (each
        member once it is complete; never closed here, and not resumable).
    :param format: ``"csv"`` (a header line, then one line per credit) or ``"jsonl"``;
        default: ``"jsonl"`` for a ``.jsonl`` or ``.ndjson`` file, else ``"csv"``.
    :param state: the state file that makes the export resumable (created if missing,
        mode 0600, deleted once the export is complete; a cursor that holds the API key
        is never written to it).
    :param overwrite: replace an existing file (once the new export is complete).
    :param concurrency: members read at the same time.
    :param page_size: credits per request (default: the API's).
    :param abort_after: stop after that many members in a row failed for a cause every
        member would share (the key refused, the API unreachable); None: never.
    :param on_progress: called with an :class:`ExportProgress` after each page and
        member (at once, on the event loop: keep it short).
    :param amounts_as_strings: in JSON Lines, write ``amount`` and ``new_balance`` as
        strings (``"99999999999999999999.99"``), for readers whose ``json.loads`` turns
        such numbers into floats; CSV cells are text already.
    :returns: the credits and members written, and the members that failed.
    :raises ValueError: for a bad argument; nothing is created or sent.
    :raises ExportOutputError: if the file exists (without ``overwrite``), its directory
        does not, or it cannot be written.
    :raises ExportStateError: if the state file cannot be used (another export's, another
        process is using it, other ids than the saved export's...).
    :raises StreamAbortedError: when members kept failing for a shared cause; with
        ``state``, calling again resumes at the first of them.
    """
    fmt = _format_of(out, format)
    if amounts_as_strings and fmt != "jsonl":
        raise ValueError("amounts_as_strings is for JSON Lines (CSV cells are text already)")
    target = OutputTarget(_output(out))
    state_path = _state_path(state, target)
    ids = UniqueIds(member_ids)
    _check_positive("concurrency", concurrency)
    for name, value in (("page_size", page_size), ("abort_after", abort_after)):
        if value is not None:
            _check_positive(name, value)
    target.check(overwrite=overwrite)
    header, encode = page_encoder(fmt, amounts_as_strings=amounts_as_strings)
    files = ExportFiles(target, fmt, state_path, amounts_as_strings)
    try:
        start, sink = files.open(header.encode(), client.base_url, client._reveals_key)
        exporter = OrderedExport(
            sink, encode, start=start, report=files.report, on_progress=on_progress
        )
        await exporter.run(
            client,
            aiter(ids),
            concurrency=concurrency,
            page_size=page_size,
            abort_after=abort_after,
        )
        files.finish()
    except BaseException:
        files.stop()
        raise
    return files.report.report(ids.duplicates)


class UniqueIds:
    """The ids of an export as text, each once (in the order first given).

    :param member_ids: an iterable or async iterable of ``str`` or ``int``; a collection
        (a list, a tuple...) is checked at once, anything else as it is read.
    :raises ValueError: for a single str, something not iterable, or a bad id.
    """

    def __init__(self, member_ids: IdSource) -> None:
        if isinstance(member_ids, (str, bytes)):
            raise ValueError("member_ids must be an iterable of ids, not a single str")
        if not isinstance(member_ids, (Iterable, AsyncIterable)):
            raise ValueError(f"member_ids must be iterable, not {type(member_ids).__name__}")
        if isinstance(member_ids, Collection):
            for member_id in member_ids:
                _id_text(member_id)
        self._ids = member_ids
        #: Ids skipped so far because they were given before.
        self.duplicates = 0

    async def __aiter__(self) -> AsyncIterator[str]:
        seen: set[str] = set()
        async for member_id in _each(self._ids):
            text = _id_text(member_id)
            if text in seen:
                self.duplicates += 1
                continue
            seen.add(text)
            yield text


async def _each(member_ids: IdSource) -> AsyncIterator[object]:
    if isinstance(member_ids, AsyncIterable):
        async for member_id in member_ids:
            yield member_id
    else:
        for member_id in member_ids:
            yield member_id


def _id_text(member_id: object) -> str:
    if isinstance(member_id, bool) or not isinstance(member_id, (str, int)):
        raise ValueError(f"a member id must be a str or an int, got {member_id!r}")
    text = str(member_id)
    if not text.strip():
        raise ValueError("a member id must not be empty")
    return text


def _output(out: object) -> str | BinaryIO:
    if isinstance(out, (str, os.PathLike)):
        path = os.fspath(out)
        if not isinstance(path, str) or not path:
            raise ValueError(f"out must be a file path or a binary stream, got {out!r}")
        return path
    if not callable(getattr(out, "write", None)) or isinstance(out, (bytes, bytearray)):
        raise ValueError(f"out must be a file path or a binary stream, got {out!r}")
    return out  # type: ignore[return-value]


def _format_of(out: object, format: object) -> ExportFormat:
    if format is None:
        name = os.fspath(out) if isinstance(out, (str, os.PathLike)) else ""
        return "jsonl" if str(name).lower().endswith(_JSONL_SUFFIXES) else "csv"
    if format == "csv" or format == "jsonl":
        return format
    raise ValueError(f'format must be "csv" or "jsonl", got {format!r}')


def _state_path(state: str | os.PathLike[str] | None, target: OutputTarget) -> str | None:
    if state is None:
        return None
    path = os.fspath(state)
    if not isinstance(path, str) or not path:
        raise ValueError(f"state must be a file path, got {state!r}")
    if not target.is_file:
        raise ValueError("state needs out to be a file: a stream or a device cannot be resumed")
    if os.path.realpath(path) == target.path:
        raise ValueError("state must not be the output file")
    return path


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
