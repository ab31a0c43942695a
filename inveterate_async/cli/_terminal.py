"""Whether a stream is an interactive terminal: it decides formats, progress and prompts."""

from __future__ import annotations


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is attached to a terminal.

    :param stream: a file object such as ``sys.stdout``, or anything else.
    :returns: True only if ``stream.isatty()`` says so; False for a closed stream or an
        object without ``isatty``.
    """
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        return False
