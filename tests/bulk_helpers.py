"""Shared by the bulk-adjustment tests: a deterministic world, counting the ledger and the
requests, and reading journal files the way any SQLite tool would."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from inveterate_async import AdjustmentReport, CreditAdjustment, InveterateClient
from inveterate_async.testing import ManualClock, RecordedRequest, Sandbox

from .conftest import API_KEY

# The documented tag: "{note} [ref:{ref}]" (or "[ref:{ref}]"); a ref has no '[', ']' or
# whitespace. Written out here rather than imported, so that the tests check the library.
TAG = re.compile(r"(?:^| )\[ref:(?P<ref>[^\[\]\s]+)\]\Z")


@attrs.frozen
class World:
    """A sandbox, a client and a clock they share: settle windows and delayed visibility
    play out in no real time, the same way every run."""

    sandbox: Sandbox
    client: InveterateClient
    clock: ManualClock


@asynccontextmanager
async def world(
    *, visibility_delay: float = 0.0, timeout: float = 30.0, max_retries: int = 0
) -> AsyncIterator[World]:
    """A started sandbox and a client on one :class:`ManualClock`."""
    clock = ManualClock()
    async with (
        Sandbox(api_key=API_KEY, clock=clock, visibility_delay=visibility_delay) as sandbox,
        InveterateClient(
            API_KEY,
            base_url=sandbox.base_url,
            sleep=clock.sleep,
            backoff_base=0,
            max_retries=max_retries,
            timeout=timeout,
        ) as client,
    ):
        yield World(sandbox, client, clock)


def api_entries(sandbox: Sandbox, members: Iterable[str]) -> list[dict[str, Any]]:
    """Every credit written through the API (not seeded), in the order they were written."""
    entries = [e for m in members for e in sandbox.ledger(m) if e["reason"] == "api"]
    return sorted(entries, key=lambda entry: str(entry["id"]))


def content(member: str, amount: Decimal, note: str | None) -> tuple[str, Decimal, str]:
    """How a credit is compared with an adjustment: member, amount value, note."""
    return (member, amount.normalize(), note or "")


def written(sandbox: Sandbox, members: Iterable[str]) -> Counter[tuple[str, Decimal, str]]:
    """How many API credits each (member, amount, note) has in the sandbox."""
    return Counter(
        content(member, entry["amount"], entry["note"])
        for member in set(members)
        for entry in sandbox.ledger(member)
        if entry["reason"] == "api"
    )


def wanted(adjustments: Iterable[CreditAdjustment], *, tagged: bool) -> Counter[Any]:
    """The credits a batch should leave, as :func:`written` counts them."""
    return Counter(
        content(a.customer_id, a.amount, a.tagged_note() if tagged else a.note) for a in adjustments
    )


def refs_written(sandbox: Sandbox, members: Iterable[str]) -> Counter[str]:
    """How many credits carry each ``[ref:...]`` marker."""
    counts: Counter[str] = Counter()
    for member in set(members):
        for entry in sandbox.ledger(member):
            match = TAG.search(entry["note"] or "")
            if match:
                counts[match["ref"]] += 1
    return counts


def body_of(adjustment: CreditAdjustment, *, tagged: bool) -> Mapping[str, Any]:
    """The JSON body the SDK sends for an adjustment, as the sandbox parses it."""
    body: dict[str, Any] = {"amount": adjustment.amount}
    note = adjustment.tagged_note() if tagged else adjustment.note
    if note is not None:
        body["note"] = note
    if adjustment.force is not None:
        body["force"] = adjustment.force
    return body


# --- requests ------------------------------------------------------------------------------


def posts(sandbox: Sandbox) -> list[RecordedRequest]:
    """The writes the sandbox received, in arrival order."""
    return [r for r in sandbox.requests if r.method == "POST"]


def key_checks(sandbox: Sandbox) -> list[RecordedRequest]:
    """The one-entry reads (``limit=1``): the key check before the first write."""
    return [r for r in sandbox.requests if r.method == "GET" and r.query.get("limit") == ["1"]]


def ledger_reads(sandbox: Sandbox, member: str | None = None) -> list[RecordedRequest]:
    """The whole-ledger reads (pages without ``limit=1``), of one member or all."""
    return [
        r
        for r in sandbox.requests
        if r.method == "GET"
        and r.query.get("limit") != ["1"]
        and (member is None or r.customer_id == member)
    ]


def reads_after_first_post(sandbox: Sandbox) -> int:
    """How many whole-ledger reads arrived after the first write."""
    requests = sandbox.requests
    first = next(i for i, r in enumerate(requests) if r.method == "POST")
    return sum(r.method == "GET" for r in requests[first + 1 :])


def nonzero(report: AdjustmentReport) -> dict[str, int]:
    """A report's counts, without the states no row is in."""
    return {state.value: n for state, n in report.counts.items() if n}


# --- journal files -------------------------------------------------------------------------


def journal_states(path: Path) -> dict[str, str]:
    """``ref -> state`` as stored in a journal file, in journal order."""
    connection = sqlite3.connect(path)
    try:
        return dict(connection.execute("SELECT ref, state FROM adjustments ORDER BY position"))
    finally:
        connection.close()


def bump_holder_run(path: Path) -> None:
    """What another writer opening the journal does: take the next run number."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("UPDATE holder SET run = run + 1")
    finally:
        connection.close()


# The schema of journal version 1 (inveterate-async before the _bulk package), as such a
# file holds it: no run columns, no holder table, a lock file beside it.
V1_SCHEMA = """
CREATE TABLE adjustments (
    position      INTEGER PRIMARY KEY,
    ref           TEXT NOT NULL UNIQUE,
    customer_id   TEXT NOT NULL,
    amount        TEXT NOT NULL,
    note          TEXT,
    force         INTEGER,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    resends       INTEGER NOT NULL DEFAULT 0,
    sent_note     TEXT,
    first_sent_at TEXT,
    last_sent_at  TEXT,
    entry_id      TEXT,
    error         TEXT,
    candidates    TEXT,
    added_at      TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (customer_id, entry_id)
);
CREATE INDEX adjustments_by_member ON adjustments (customer_id);
PRAGMA application_id = 1230391857;
PRAGMA user_version = 1;
"""


def make_v1_journal(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """A version-1 journal file with these rows (columns of ``adjustments``; ``ref``,
    ``customer_id``, ``amount`` and ``state`` at least), as the previous version left it."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(V1_SCHEMA)
        stamp = "2026-11-02T10:00:00+00:00"
        for row in rows:
            values = {"added_at": stamp, "updated_at": stamp, **row}
            columns = ", ".join(values)
            marks = ", ".join("?" * len(values))
            connection.execute(
                f"INSERT INTO adjustments ({columns}) VALUES ({marks})", tuple(values.values())
            )
    finally:
        connection.close()
