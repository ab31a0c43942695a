"""The journal's lock: an exclusive ``flock`` on the journal file itself.

The lock is on the file, not on a name: a symlink or a second name reaches the same
lock (and a journal with a second name, a hard link, is refused when opened: see
:mod:`.journal_open`). The kernel frees it when its holder ends, SIGKILL included. It needs a
local filesystem, as SQLite's WAL mode does.

SQLite's own locks are POSIX record locks, which a process loses on *every* descriptor
of the file when it closes *any* one of them. So a descriptor of a journal that this
process has open through SQLite is never closed while that connection lives: it is kept
(unlocked) and closed with the last of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

import attrs

_registry = threading.Lock()


@attrs.define
class _InUse:
    writer: bool = False
    readers: int = 0
    kept: list[int] = attrs.field(factory=list)  # descriptors to close with the last user


_in_use: dict[tuple[int, int], _InUse] = {}


class HeldElsewhere(Exception):
    """The lock is held: by this process (``here``), or by another one (``holder``, when
    known)."""

    def __init__(self, here: bool, holder: str | None = None) -> None:
        super().__init__("the journal's lock is held")
        self.here = here
        self.holder = holder


@attrs.define
class Hold:
    """This process's use of one journal file: the lock (a writer) or a reader's mark."""

    key: tuple[int, int]
    fd: int | None

    def release(self) -> None:
        """Release the lock (or the reader's mark); safe to call more than once."""
        fd, self.fd = self.fd, None
        with _registry:
            use = _in_use.get(self.key)
            if use is None:
                return
            if fd is not None:
                use.writer = False
                fcntl.flock(fd, fcntl.LOCK_UN)
                use.kept.append(fd)
            elif use.readers:
                use.readers -= 1
            if not use.writer and not use.readers:
                del _in_use[self.key]
                for kept in use.kept:
                    os.close(kept)


def _key(stat: os.stat_result) -> tuple[int, int]:
    return (stat.st_dev, stat.st_ino)


def lock(path: str) -> Hold:
    """Open (creating, mode 0600) the journal file and take its lock; nothing waits.

    :raises HeldElsewhere: the lock is held.
    :raises OSError: the file cannot be opened.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    key = _key(os.fstat(fd))
    with _registry:
        use = _in_use.get(key)
        if use is not None and use.writer:
            use.kept.append(fd)
            raise HeldElsewhere(here=True)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if use is None:
                os.close(fd)
            else:
                use.kept.append(fd)
            raise HeldElsewhere(here=False) from None
        if use is None:
            use = _in_use[key] = _InUse()
        use.writer = True
    return Hold(key, fd)


def mark_reader(path: str) -> Hold:
    """Note that this process reads the journal file (without the lock).

    :raises OSError: no such file.
    """
    key = _key(os.stat(path))
    with _registry:
        _in_use.setdefault(key, _InUse()).readers += 1
    return Hold(key, None)


def same_file(path: str, hold: Hold) -> bool:
    """Whether ``path`` still names the file ``hold`` is on."""
    try:
        return _key(os.stat(path)) == hold.key
    except OSError:
        return False


@contextlib.contextmanager
def legacy_lock(path: str) -> Iterator[None]:
    """Hold ``PATH.lock``, the lock of releases that wrote journal version 1, while such
    a journal is upgraded: a run of an older release that holds it is still writing.
    Older releases take it before they read the version, so once upgraded they refuse the
    journal; the file is removed afterwards.

    :raises HeldElsewhere: an older release's run holds it.
    """
    name = f"{path}.lock"
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
            raise HeldElsewhere(here=False, holder=holder or None) from None
        yield
        with contextlib.suppress(OSError):
            os.unlink(name)
    finally:
        os.close(fd)
