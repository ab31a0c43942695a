"""The files of one export: opening them, keeping or removing them when it stops early,
and putting them in place when it is complete."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import BinaryIO

import attrs

from .errors import write_error
from .report import Tally
from .rows import EXPORT_COLUMNS
from .state import Checkpoint, StateFile
from .target import OutputTarget, Sink


@attrs.define
class ExportFiles:
    """The output and state file of one run, and what it has set up so far.

    :param target: the output.
    :param fmt: ``csv`` or ``jsonl`` (part of what makes a saved export the same one).
    :param state_path: the state file, or None.
    :param amounts_as_strings: JSON Lines amounts as strings (part of the same too).
    """

    target: OutputTarget
    fmt: str
    state_path: str | None
    amounts_as_strings: bool = False
    report: Tally = attrs.field(factory=Tally)
    state: StateFile | None = None
    stream: BinaryIO | None = None

    def open(
        self, header: bytes, base_url: str, reveals_key: Callable[[str], bool]
    ) -> tuple[Checkpoint, Sink]:
        """Open the state file and the output: where to start, and where to write.

        :raises ExportStateError: for a state file that cannot be used.
        :raises ExportOutputError: for an output that cannot be written.
        """
        target = self.target
        start = Checkpoint(offset=len(header))
        if not target.is_file:
            self.stream = target.open_direct()
            sink = Sink(self.stream, name=target.name, seekable=False)
            sink.write(header)
            return start, sink
        if self.state_path is None:
            self.stream = target.open_new(header)
            return start, Sink(self.stream, name=target.name, seekable=True)
        identity = {"out": target.path, "format": self.fmt, "columns": ",".join(EXPORT_COLUMNS)}
        if self.amounts_as_strings:  # only then: the identities of other exports stay
            identity["amounts"] = "strings"
        self.state = StateFile(self.state_path, {**identity, "api": base_url}, reveals_key)
        saved = self.state.saved
        if saved is None or self.state.complete:
            self.stream = target.open_new(header)
            self.state.start(target.partial_path, start)
        else:
            self.stream = target.open_saved(saved.offset, self.state_path)
            self.report.failures = self.state.failures()
            start = self.report.resumed_from = saved
        self.report.saved = start
        return start, Sink(self.stream, name=target.name, seekable=True, state=self.state)

    def stop(self) -> None:
        """After an export stopped early: keep what can be resumed, remove what cannot."""
        if self.stream is not None and self.target.stream is None:
            with suppress(OSError):
                self.stream.close()
        if self.state is not None:
            self.state.close()
        elif self.stream is not None and self.target.is_file:
            self.target.discard()

    def finish(self) -> None:
        """Every member was read: the output into place, then no state file.

        :raises ExportOutputError: if the output cannot be completed.
        """
        stream = self.stream
        if stream is None:  # pragma: no cover - open() comes first
            raise RuntimeError("the export has no output")
        if self.state is not None:
            self.state.mark_complete()
        if self.target.is_file:
            self.target.commit(stream)
        else:
            try:
                stream.flush()
                if self.target.stream is None:
                    stream.close()
            except OSError as exc:
                raise write_error(self.target.name, exc) from exc
        if self.state is not None:
            self.state.delete()
