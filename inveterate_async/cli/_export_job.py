"""The files of one ``credits export`` run: opening them, keeping or removing them when it
stops early, and putting them in place when it is complete."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import suppress
from typing import BinaryIO

import attrs

from .. import StreamAbortedError
from ._core import Settings
from ._exits import write_failed
from ._exporter import ExportReport
from ._output import EXPORT_COLUMNS
from ._state import Checkpoint, FailedMember, StateFile
from ._target import OutputTarget, Sink


@attrs.define
class ExportJob:
    """One invocation: its options (to print it again) and what it has set up so far."""

    settings: Settings
    words: list[str]  # the command after the global options, for hints
    target: OutputTarget
    fmt: str
    state_path: str | None
    failed_ids: str | None
    report: ExportReport = attrs.field(factory=ExportReport)
    state: StateFile | None = None
    stream: BinaryIO | None = None
    aborted: StreamAbortedError | None = None
    duplicates: dict[str, int] = attrs.field(factory=dict)

    @property
    def keeps_partial(self) -> bool:
        """Whether an early stop leaves a partial file and a state file to resume from."""
        return self.state is not None and self.stream is not None


def open_output(job: ExportJob, header: bytes, base_url: str) -> tuple[Checkpoint, BinaryIO]:
    """Open the state file and the output: where to start, and the stream to write."""
    target = job.target
    start = Checkpoint(offset=len(header))
    if not target.is_file:
        job.stream = target.open_direct()
        Sink(job.stream, name=target.name, seekable=False).write(header)
        return start, job.stream
    if job.state_path is None:
        job.stream = target.open_new(header)
        return start, job.stream
    identity = {"out": target.path, "format": job.fmt, "columns": ",".join(EXPORT_COLUMNS)}
    job.state = StateFile(job.state_path, {**identity, "api": base_url})
    saved = job.state.saved
    if saved is None or job.state.complete:
        job.stream = target.open_new(header)
        job.state.start(target.partial_path, start)
    else:
        job.stream = target.open_saved(saved.offset)
        job.report.failures = job.state.failures()
        start = saved
    job.report.saved = start
    return start, job.stream


def stop(job: ExportJob) -> None:
    """After an export stopped early: keep what can be resumed, remove what cannot."""
    if job.stream is not None and not job.target.is_stdout:
        with suppress(OSError):
            job.stream.close()
    if job.state is not None:
        job.state.close()
    elif job.stream is not None and job.target.is_file:
        job.target.discard()


def finish(job: ExportJob) -> None:
    """Every member was read: the failed ids, then the output into place, then no state."""
    stream = job.stream
    if stream is None:  # pragma: no cover - main() opens it before it can return
        raise RuntimeError("the export has no output")
    if job.state is not None:
        job.state.mark_complete()
    if job.failed_ids is not None:
        write_failed_ids(job.failed_ids, job.report.failures)
    if job.target.is_file:
        job.target.commit(stream)
    else:
        try:
            stream.flush()
            if not job.target.is_stdout:
                stream.close()
        except OSError as exc:
            raise write_failed(job.target.name, exc, stream) from None
    if job.state is not None:
        job.state.delete()


def write_failed_ids(path: str, failures: Sequence[FailedMember]) -> None:
    """Write the failed members' ids, one per line (an empty file when none failed)."""
    partial = f"{path}.partial"
    try:
        with open(partial, "w", encoding="utf-8", newline="\n") as file:
            file.writelines(f"{failure.member_id}\n" for failure in failures)
        os.replace(partial, path)
    except OSError as exc:
        raise write_failed(path, exc) from None
