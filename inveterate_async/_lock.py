"""The journal's lock: an exclusive ``flock`` on ``PATH.lock``, freed by the OS on any exit.

A lock row in the database would need its holder's pid and a guess at whether that process
is still alive; an ``flock`` is released by the kernel when the holder ends, SIGKILL
included, and two opens of the file in one process exclude each other too. It needs a POSIX
system and a local filesystem (``flock`` over NFS is not reliable).
"""

from __future__ import annotations

import fcntl
import os
import socket
from datetime import datetime, timezone

from ._errors import JournalLockedError


def lock(path: str) -> int:
    """Take the lock of the journal at ``path``; write who holds it into the lock file.

    :returns: the lock file's descriptor: close it to release the lock.
    :raises JournalLockedError: someone else holds it (nothing waits).
    :raises OSError: the lock file cannot be opened.
    """
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise JournalLockedError(
            f"journal {path} is in use by {holder}; nothing was sent: wait for it to "
            "finish, or stop it",
            path=path,
            holder=holder,
        ) from None
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0)
    return fd
