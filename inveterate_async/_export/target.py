"""Where an export's rows go, and how they get there safely.

A file is written as a partial file beside it (``.NAME.partial``, same directory, so the
final rename is atomic) and renamed into place only when the export has read every
member: until then an existing file is untouched, and a half-written export never looks
like a finished one. A stream given by the caller (stdout...) and existing non-regular
files (``/dev/full``, a FIFO) are written directly.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from contextlib import suppress
from typing import BinaryIO

from .errors import ExportOutputError, ExportStateError, write_error
from .state import Checkpoint, ExportFailure, StateFile

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock
    fcntl = None  # type: ignore[assignment]


class OutputTarget:
    """The output of an export.

    :param out: a path, or a binary stream written as it is (never closed here).
    :param name: how errors name a stream (default: its ``name``, else ``the stream``).
    """

    def __init__(self, out: str | BinaryIO, *, name: str | None = None) -> None:
        self.stream = None if isinstance(out, str) else out
        self.out = out if isinstance(out, str) else ""
        self.name = name or self.out or str(getattr(out, "name", "the stream"))
        # A symbolic link is followed: the file it points to is replaced, the link stays.
        self.path = os.path.realpath(self.out) if self.out else ""
        directory, base = os.path.split(self.path)
        self.partial_path = os.path.join(directory, f".{base}.partial") if self.out else ""
        self.is_file = bool(self.out) and not _is_special(self.path)

    def check(self, *, overwrite: bool) -> None:
        """Refuse what cannot work before anything is created or sent.

        :raises ExportOutputError: for a missing directory, or an existing file without
            ``overwrite``.
        """
        if not self.is_file:
            return
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            message = f"cannot write {self.out}: no directory {directory}"
            raise ExportOutputError(message, path=self.out, problem="no_directory")
        if os.path.exists(self.path) and not overwrite:
            message = (
                f"{self.out} exists: pass overwrite=True to replace it (it is replaced only "
                "when the new export is complete)"
            )
            raise ExportOutputError(message, path=self.out, problem="exists")

    def open_new(self, header: bytes) -> BinaryIO:
        """The partial file, emptied, with ``header`` written and on disk (a first checkpoint
        may count it at once)."""
        stream = self._open_partial(create=True)
        try:
            stream.truncate(0)
            stream.write(header)
            stream.flush()
            os.fsync(stream.fileno())
            _fsync_directory(os.path.dirname(self.path))
        except OSError as exc:
            stream.close()
            raise write_error(self.name, exc) from exc
        return stream

    def open_saved(self, offset: int, state_path: str) -> BinaryIO:
        """The partial file of a saved export, cut back to its first ``offset`` bytes.

        :param state_path: the state file that says so, for the errors.
        :raises ExportStateError: if it is missing or shorter than that.
        """
        if not os.path.exists(self.partial_path):
            message = (
                f"the partial export {self.partial_path} is missing: delete the state file "
                f"{state_path} to start over"
            )
            raise ExportStateError(message, path=state_path, problem="partial_missing")
        stream = self._open_partial(create=False)
        size = os.fstat(stream.fileno()).st_size
        if size < offset:
            stream.close()
            message = (
                f"the partial export {self.partial_path} is shorter than its state file "
                f"says: delete the state file {state_path} to start over"
            )
            raise ExportStateError(message, path=state_path, problem="partial_shorter")
        stream.truncate(offset)
        stream.seek(offset)
        return stream

    def open_direct(self) -> BinaryIO:
        """The caller's stream, or the existing non-regular file, to write to directly."""
        if self.stream is not None:
            return self.stream
        try:
            return open(self.path, "wb")
        except OSError as exc:
            raise write_error(self.name, exc) from exc

    def _open_partial(self, *, create: bool) -> BinaryIO:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.partial_path, flags, 0o666)
        except OSError as exc:
            message = f"cannot write {self.out}: {exc.strerror}"
            raise ExportOutputError(message, path=self.out, problem="cannot_create") from exc
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                message = f"another export is writing {self.out}"
                raise ExportOutputError(message, path=self.out, problem="in_use") from None
        return os.fdopen(fd, "r+b")

    def commit(self, stream: BinaryIO) -> None:
        """Make the partial file durable and rename it into place (keeping the old mode)."""
        try:
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
            if os.path.exists(self.path):
                os.chmod(self.partial_path, stat.S_IMODE(os.stat(self.path).st_mode))
            os.replace(self.partial_path, self.path)
            _fsync_directory(os.path.dirname(self.path))
        except OSError as exc:
            raise write_error(self.name, exc) from exc

    def discard(self) -> None:
        """Delete the partial file (an export that cannot be resumed)."""
        with suppress(FileNotFoundError):
            os.remove(self.partial_path)


def _is_special(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - not possible on every platform
        return
    try:
        with suppress(OSError):  # some file systems refuse it
            os.fsync(fd)
    finally:
        os.close(fd)


class Sink:
    """Where the ordered export writes: a stream, and (with a state file) checkpoints.

    :param stream: the partial file, the caller's stream or a device.
    :param name: the output as the user named it, for errors.
    :param seekable: a partial file: the member being written streams into it page by page
        (its rows can be cut off again); otherwise each member is written once complete.
    :param state: the state file that checkpoints are saved to, or None.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        name: str,
        seekable: bool,
        state: StateFile | None = None,
    ) -> None:
        self.stream = stream
        self.name = name
        self.streams_head = seekable
        self.state = state

    @property
    def saves(self) -> bool:
        """Whether checkpoints are saved (a partial file with a state file)."""
        return self.state is not None

    def write(self, data: bytes) -> None:
        """Append ``data``.

        :raises ExportOutputError: for a full disk, a closed pipe...
        """
        try:
            self.stream.write(data)
        except OSError as exc:
            raise write_error(self.name, exc) from exc

    def truncate(self, offset: int) -> None:
        """Cut the output back to ``offset`` bytes."""
        try:
            self.stream.flush()
            self.stream.truncate(offset)
            self.stream.seek(offset)
        except OSError as exc:
            raise write_error(self.name, exc) from exc

    def flush(self) -> None:
        """Hand everything written to the operating system."""
        try:
            self.stream.flush()
        except OSError as exc:
            raise write_error(self.name, exc) from exc

    def save(self, checkpoint: Checkpoint, failures: Sequence[ExportFailure]) -> None:
        """Make the output durable up to here, then record ``checkpoint`` (in that order: a
        checkpoint never describes bytes that could be lost)."""
        if self.state is None:
            return
        try:
            self.stream.flush()
            os.fsync(self.stream.fileno())
        except OSError as exc:
            raise write_error(self.name, exc) from exc
        self.state.save(checkpoint, failures)
