"""Export every member's credit ledger to JSON Lines, resuming exactly after any crash.

    export INVETERATE_API_KEY=...
    python examples/export_worker.py --ids-file members.txt --out credits.jsonl --state worker.db

Stop it any way you like (Ctrl-C, SIGTERM, ``kill -9``, a power cut) and run the same
command again: it continues where it stopped, and in the end ``credits.jsonl`` holds every
credit exactly once, each member's credits in ledger order (members interleave). Members
that failed are listed on stderr (exit code 1); running it again retries them from where
they stopped.

How (docs/pagination.md, "A worker that survives kill -9"):

1. For each page (a ``LedgerPage`` event), append its lines to the output and fsync it.
2. Then record, in one SQLite transaction, the member's position after the page and the
   output's length.
3. On start, cut the output back to the recorded length, and start every member from its
   recorded position (``LedgerPosition.FINISHED`` members are not read again).

A crash between 1 and 2 leaves lines no checkpoint counts: step 3 cuts them off, and the
page is read again from the previous position. So nothing is lost and nothing is twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Iterable
from typing import BinaryIO

from inveterate_async import (
    Credit,
    InveterateClient,
    LedgerPage,
    LedgerPosition,
    MemberFinished,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (member_id TEXT PRIMARY KEY, position TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS output (id INTEGER PRIMARY KEY CHECK (id = 1), bytes INTEGER NOT NULL);
"""


class Checkpoints:
    """Members' positions and the output's committed length, in SQLite (WAL)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def output_bytes(self) -> int | None:
        """The output's length at the last checkpoint (None: no export started yet)."""
        row = self.db.execute("SELECT bytes FROM output").fetchone()
        return None if row is None else int(row[0])

    def positions(self) -> dict[str, LedgerPosition]:
        rows = self.db.execute("SELECT member_id, position FROM positions")
        return {member_id: LedgerPosition.from_json(text) for member_id, text in rows}

    def save(self, member_id: str, position: LedgerPosition, output_bytes: int) -> None:
        """Record a member's position and the output's length together (one transaction)."""
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO positions VALUES (?, ?)", (member_id, position.to_json())
            )
            self.db.execute("INSERT OR REPLACE INTO output VALUES (1, ?)", (output_bytes,))


def credit_line(member_id: str, credit: Credit) -> bytes:
    """One JSON line; amounts as strings, so that their exact digits survive any reader."""
    record = {
        "member_id": member_id,
        "id": credit.raw.get("id"),
        "created_at": None if credit.created_at is None else credit.created_at.isoformat(),
        "amount": str(credit.amount),
        "new_balance": None if credit.new_balance is None else str(credit.new_balance),
        "reason": credit.reason,
        "note": credit.note,
    }
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


def open_output(path: str, committed: int | None) -> BinaryIO:
    """The output, cut back to its committed length (step 3)."""
    if committed is None:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            sys.exit(f"{path} exists but the state file knows nothing of it: remove it first")
        committed = 0
    output = open(path, "r+b" if os.path.exists(path) else "w+b")  # noqa: SIM115
    if os.fstat(output.fileno()).st_size < committed:
        sys.exit(f"{path} is shorter than its checkpoint says: it was changed by hand")
    output.truncate(committed)
    output.seek(committed)
    return output


async def export(
    client: InveterateClient,
    member_ids: Iterable[str],
    output: BinaryIO,
    checkpoints: Checkpoints,
    *,
    concurrency: int,
    page_size: int | None,
) -> int:
    """Export the members not finished yet; the number of members that failed."""
    saved = checkpoints.positions()
    todo = [
        (member_id, saved.get(member_id, LedgerPosition.START))
        for member_id in member_ids
        if not saved.get(member_id, LedgerPosition.START).done
    ]
    failed = 0
    stream = client.iter_credits_many(
        todo, concurrency=concurrency, page_size=page_size, on_error="collect"
    )
    async with stream:
        async for event in stream.events():
            if isinstance(event, LedgerPage):
                member_id = str(event.customer_id)
                output.write(b"".join(credit_line(member_id, c) for c in event.credits))
                output.flush()
                os.fsync(output.fileno())  # step 1: the lines are on disk...
                checkpoints.save(member_id, event.position, output.tell())  # ...step 2
            elif isinstance(event, MemberFinished) and event.error is not None:
                failed += 1
                print(f"{event.customer_id}: {event.error}", file=sys.stderr)
    return failed


async def run(
    args: argparse.Namespace, member_ids: list[str], output: BinaryIO, checkpoints: Checkpoints
) -> int:
    task = asyncio.current_task()
    if task is not None:  # SIGTERM stops it like Ctrl-C (either way, a rerun resumes)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with InveterateClient(base_url=args.base_url) as client:
        return await export(
            client,
            member_ids,
            output,
            checkpoints,
            concurrency=args.concurrency,
            page_size=args.page_size,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export members' ledgers to JSON Lines.")
    parser.add_argument("--ids-file", required=True, help="member ids, one per line")
    parser.add_argument("--out", required=True, help="the JSON Lines file to write")
    parser.add_argument("--state", required=True, help="the SQLite checkpoint file")
    parser.add_argument("--base-url", help="the API root (default: $INVETERATE_BASE_URL)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--page-size", type=int)
    args = parser.parse_args(argv)
    with open(args.ids_file, encoding="utf-8") as file:
        member_ids = list(dict.fromkeys(line.strip() for line in file if line.strip()))
    checkpoints = Checkpoints(args.state)
    output = open_output(args.out, checkpoints.output_bytes())
    try:
        failed = asyncio.run(run(args, member_ids, output, checkpoints))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("stopped: run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        output.close()
        checkpoints.db.close()
    print(f"done: {len(member_ids) - failed} members exported, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
