"""Files that are whole or absent: written aside, synced, then renamed into place."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


def write_atomically(target: Path, fill: Callable[[TextIO], int]) -> int:
    """Write ``target`` through ``fill`` so that it is never seen half-written.

    The text goes to ``<target>.tmp`` (replaced if a killed run left one), which is synced
    to disk and renamed over ``target``; the folder is synced so the rename survives too.
    If ``fill`` fails, ``target`` is left as it was.

    :param fill: writes the content to the open file and returns a count (e.g. rows).
    :returns: what ``fill`` returned.
    """
    temporary = target.with_name(target.name + ".tmp")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as file:
            count = fill(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return count


def count_lines(path: Path) -> int:
    """The number of lines of a file, read in constant memory."""
    with open(path, "rb") as file:
        return sum(1 for _ in file)
