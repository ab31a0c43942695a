"""The ref tag that ``tag_notes`` appends to a note, and finding it in a ledger note.

A tagged note is ``"{note} [ref:{ref}]"`` (``"[ref:{ref}]"`` without a note). A ref has
no ``[``, ``]`` or whitespace, so the tag is always the note's last ``[ref:...]``, a
tagged note splits back into one note and one ref, and two refs never give the same
tagged note.
"""

from __future__ import annotations

import re

_TAG = re.compile(r"(?:^| )\[ref:([^\[\]\s]+)\]\Z")
_FORBIDDEN = re.compile(r"[\[\]\s]")

REF_RULE = "a ref must not contain '[', ']' or whitespace (it goes into the note's tag)"


def ref_problem(ref: str) -> str | None:
    """Why ``ref`` cannot be tagged, or None when it can."""
    return REF_RULE if _FORBIDDEN.search(ref) else None


def tagged_note(note: str | None, ref: str) -> str:
    """The note as sent with ``tag_notes``: ``"{note} [ref:{ref}]"``."""
    tag = f"[ref:{ref}]"
    return f"{note} {tag}" if note else tag


def ref_of(note: str | None) -> str | None:
    """The ref a ledger note was tagged with, or None for an untagged note."""
    if not note:
        return None
    found = _TAG.search(note)
    return None if found is None else found.group(1)
