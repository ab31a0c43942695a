"""The bulk-adjustment job of ``benchmarks.jobs``, shared by its harness, server and clients.

A :class:`Job` is a deterministic batch: ``adjustments`` rows spread evenly over members
``"1"`` to ``str(members)`` (the ids ``Sandbox.seed_members`` gives), in shuffled order, with
exact two-decimal amounts and a few different notes. Every process rebuilds the same rows
from the job's JSON, so the server can check a run's ledgers without being sent the batch.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

# Entries every member's ledger holds before a run, so that ledger reads return something.
SEEDED_CREDITS = 3
CSV_COLUMNS = ("ref", "member_id", "amount", "note", "force")
_NOTES = (None, "bonus", "Goodwill \u2014 sorry for the delay", "loyalty 2026", None)


class Row(NamedTuple):
    """One adjustment as the batch file has it."""

    ref: str
    member_id: str
    amount: str  # exact decimal text, e.g. "12.34"
    note: str | None


@dataclass(frozen=True)
class Job:
    """A batch of adjustments, the concurrency to send it with and the server's latency."""

    adjustments: int
    members: int
    concurrency: int
    latency_ms: float
    seed: int = 20261101

    @property
    def name(self) -> str:
        """Short label for progress lines and tables."""
        return f"c={self.concurrency} {self.latency_ms:g}ms"

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"{self.adjustments:,} adjustments over {self.members:,} members "
            f"({SEEDED_CREDITS} credits each before), concurrency {self.concurrency}, "
            f"server latency {self.latency_ms:g} ms"
        )

    def rows(self) -> list[Row]:
        """The batch, the same for the same job: ``adjustments // members`` rows per member
        (the first members get one more when it does not divide), shuffled."""
        rng = random.Random(self.seed)
        owners = [str(1 + n % self.members) for n in range(self.adjustments)]
        rng.shuffle(owners)
        rows = []
        for number, member_id in enumerate(owners):
            cents = rng.randint(100, 5_000)
            amount = f"{cents // 100}.{cents % 100:02d}"
            # Fixed width: no ref is a substring of another (the server's check relies on it).
            rows.append(Row(f"bench-{number:07d}", member_id, amount, rng.choice(_NOTES)))
        return rows

    def to_json(self) -> str:
        """Serialise for a subprocess's command line."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


def write_csv(path: Path, rows: list[Row]) -> None:
    """The batch file ``credits apply`` reads (an empty note or force is none)."""
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        writer.writerows((row.ref, row.member_id, row.amount, row.note or "", "") for row in rows)


def read_csv(path: str) -> list[Row]:
    """The rows of a file written by :func:`write_csv`: what every client starts from."""
    with open(path, encoding="utf-8", newline="") as file:
        return [
            Row(line["ref"], line["member_id"], line["amount"], line["note"] or None)
            for line in csv.DictReader(file)
        ]
