"""Command lines printed for the user to run next (resume, retry, check), quoted for a shell.

They repeat the global options given on the command line (settings from the environment are
still there when the user runs them), never the API key: when it was given with
``--api-key``, the hint says to add it back.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ._core import DEFAULT_MAX_RETRIES, DEFAULT_SANDBOX_MEMBERS, DEFAULT_TIMEOUT, Settings


def global_words(settings: Settings) -> list[str]:
    """``inveterate`` and the global options given as arguments, except the key."""
    words = ["inveterate"]
    if settings.sandbox:
        words.append("--sandbox")
        if settings.sandbox_members != DEFAULT_SANDBOX_MEMBERS:
            words += ["--sandbox-members", str(settings.sandbox_members)]
    elif settings.base_url and settings.base_url_in_arguments:
        words += ["--base-url", settings.base_url]
    if settings.max_retries != DEFAULT_MAX_RETRIES:
        words += ["--max-retries", str(settings.max_retries)]
    if settings.timeout != DEFAULT_TIMEOUT:
        words += ["--timeout", f"{settings.timeout:g}"]
    return words


def command_line(settings: Settings, words: Sequence[str]) -> str:
    """The full command ``inveterate [global options] WORDS...``, quoted for a shell."""
    return shlex.join([*global_words(settings), *words])


def hint(settings: Settings, lead: str, words: Sequence[str]) -> str:
    """``lead: command``, saying to add the key back when it was an argument."""
    if settings.key_in_arguments and not settings.sandbox:
        lead += " (add your --api-key, or set INVETERATE_API_KEY)"
    return f"{lead}: {command_line(settings, words)}"


def list_words(member_id: str, cursor: str | None = None) -> list[str]:
    """``credits list MEMBER_ID [--cursor C]``."""
    words = ["credits", "list", member_id]
    return words if cursor is None else [*words, "--cursor", cursor]
