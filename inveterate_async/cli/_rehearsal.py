"""The rehearsal flags of ``inveterate sandbox``: write faults and the visibility delay.

With them a user can rehearse ``credits apply`` from the shell against every outcome a write
can have on the real API (see docs/bulk.md), in known shares and the same way for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class FiniteFloatRange(click.FloatRange):
    """A :class:`click.FloatRange` that also refuses ``nan`` and ``inf``."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


SHARE = FiniteFloatRange(0, 1)
SECONDS = FiniteFloatRange(min=0)

_OPTIONS = (
    click.option(
        "--fail-writes-before",
        type=SHARE,
        default=0,
        show_default=True,
        metavar="SHARE",
        help="Share (0 to 1) of POSTs answered 500 without applying the credit.",
    ),
    click.option(
        "--fail-writes-after",
        type=SHARE,
        default=0,
        show_default=True,
        metavar="SHARE",
        help="Share of POSTs whose credit is applied, then answered 500.",
    ),
    click.option(
        "--drop-writes-after",
        type=SHARE,
        default=0,
        show_default=True,
        metavar="SHARE",
        help="Share of POSTs whose credit is applied, then the connection dropped unanswered.",
    ),
    click.option(
        "--visibility-delay",
        type=SECONDS,
        default=0,
        show_default=True,
        metavar="SECONDS",
        help="Seconds after a write before its credit shows in reads (the API's async writes).",
    ),
    click.option(
        "--fault-seed",
        type=int,
        default=None,
        metavar="N",
        help="Seed of the random faults (reads and writes); default: --seed.",
    ),
)


def rehearsal_options(command: F) -> F:
    """Add ``--fail-writes-before``, ``--fail-writes-after``, ``--drop-writes-after``,
    ``--visibility-delay`` and ``--fault-seed`` to a click command, in that order."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def check_write_shares(before: float, after: float, dropped: float) -> None:
    """:raises click.UsageError: if the shares of failed writes sum above 1."""
    total = math.fsum((before, after, dropped))
    if total > 1 + 1e-9:  # shares typed as decimals may sum to a hair above 1 in binary
        raise click.UsageError(
            "--fail-writes-before, --fail-writes-after and --drop-writes-after must sum to "
            f"at most 1 (they sum to {total:g})"
        )


def _percent(share: float) -> str:
    return f"{share * 100:.4g}%"


def describe_faults(
    *,
    fail_rate: float = 0.0,
    visibility_delay: float = 0.0,
    fail_writes_before: float = 0.0,
    fail_writes_after: float = 0.0,
    drop_writes_after: float = 0.0,
    seed: int = 0,
) -> list[str]:
    """The banner lines that name the active faults and the visibility delay (none: [])."""
    writes = [
        f"{_percent(share)} {what}"
        for share, what in (
            (fail_writes_before, "answered 500 before applying"),
            (fail_writes_after, "applied, then answered 500"),
            (drop_writes_after, "applied, then dropped without an answer"),
        )
        if share > 0
    ]
    lines = []
    if writes:
        lines.append(f"  faults:   POSTs: {', '.join(writes)} (seed {seed})")
    if fail_rate > 0:
        lines.append(f"  faults:   GETs: {_percent(fail_rate)} answered 503 (seed {seed})")
    if visibility_delay > 0:
        lines.append(f"  delay:    a written credit shows in GETs {visibility_delay:g} s later")
    return lines
