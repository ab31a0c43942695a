"""``inveterate demo``: a guided tour against an embedded, seeded sandbox."""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from .. import Credit, InveterateClient, ServerError, export_credits
from .._errors import UNKNOWN_OUTCOME_HINT
from ._core import SANDBOX_API_KEY, LedgerState, start_sandbox, write_ledger
from ._exits import run
from ._output import CREDIT_COLUMNS, TableWriter, plural
from ._progress import export_progress, ledger_progress
from ._terminal import is_terminal

DEMO_MEMBERS = 200
DEMO_CONCURRENCY = 8
DEMO_LATENCY = 0.01  # seconds per request during the export, like a real network


async def _last_credit(client: InveterateClient, member_id: str) -> Credit:
    last = None
    async for credit in client.iter_credits(member_id):
        last = credit
    if last is None:  # pragma: no cover - the demo's member always has credits
        raise RuntimeError(f"member {member_id} has no credits")
    return last


async def run_demo(console: Console | None = None) -> None:
    """Run the four sections against an embedded sandbox, stopped at the end.

    :param console: where everything is printed; None prints to stdout.
    """
    out = console or Console(highlight=False)
    progress = is_terminal(sys.stderr)
    loop = asyncio.get_running_loop()
    started = loop.time()

    out.rule("[bold]inveterate demo")
    out.print(
        f"Starting an embedded sandbox API on 127.0.0.1 with {DEMO_MEMBERS} seeded members "
        "(ids 1..200). No key or account needed: the same commands work against the real "
        "API with --api-key."
    )
    sandbox = await start_sandbox(members=DEMO_MEMBERS)
    sandbox.seed_members(1, credits_per_member=7, seed=7)  # a longer ledger for member 1
    try:
        async with InveterateClient(
            SANDBOX_API_KEY, base_url=sandbox.base_url, max_retries=0
        ) as client:
            out.print(f"Sandbox at {sandbox.base_url}\n")

            # 1. One ledger, page by page.
            out.rule("[bold]1. List one member's ledger")
            out.print("$ inveterate --sandbox credits list 1 --page-size 5 --format table\n")
            state = LedgerState()
            with ledger_progress(progress, redirect_stdout=is_terminal(sys.stdout)) as tracker:
                await write_ledger(
                    client,
                    "1",
                    TableWriter(None, CREDIT_COLUMNS),
                    state,
                    page_size=5,
                    tracker=tracker,
                )
            out.print(
                f"\n{plural(state.printed, 'credit')} in {plural(state.pages, 'page')}: each "
                "page was requested with the cursor of the one before; amounts are exact "
                "decimals, never floats.\n"
            )

            # 2. Many ledgers at once.
            out.rule(f"[bold]2. Export {DEMO_MEMBERS} members with fan-out")
            path = Path(tempfile.mkdtemp(prefix="inveterate-demo-")) / "credits.csv"
            out.print(
                f"$ inveterate --sandbox credits export $(seq 1 {DEMO_MEMBERS}) "
                f"--concurrency {DEMO_CONCURRENCY} --out {path}\n"
            )
            sandbox.latency = DEMO_LATENCY
            sandbox.reset_stats()
            export_started = loop.time()
            with export_progress(progress, total=DEMO_MEMBERS) as tracker:
                result = await export_credits(
                    client,
                    range(1, DEMO_MEMBERS + 1),
                    path,
                    concurrency=DEMO_CONCURRENCY,
                    on_progress=lambda now: tracker.update(
                        credits=now.credits, members=now.members
                    ),
                )
            seconds = loop.time() - export_started
            sandbox.latency = 0.0
            out.print(f"file:    {escape(str(path))} (kept for you to look at)")
            out.print(
                f"rows:    {plural(result.credits, 'credit')} of "
                f"{plural(result.members, 'member')}, {len(result.failures)} failed"
            )
            requests = len(sandbox.requests)
            out.print(
                f"time:    {seconds:.2f} s for {requests} requests of "
                f"{DEMO_LATENCY * 1000:.0f} ms each (at most {sandbox.max_in_flight} in "
                f"flight; one at a time would take {requests * DEMO_LATENCY:.1f} s)"
            )
            out.print("sample:")
            with path.open(encoding="utf-8") as file:
                for line in itertools.islice(file, 4):
                    out.print("  " + escape(line.rstrip("\n")), soft_wrap=True)
            out.print()

            # 3. A write.
            out.rule("[bold]3. Add a credit")
            out.print('$ inveterate --sandbox credits add 1 10.00 --note "demo goodwill" --yes\n')
            before = await _last_credit(client, "1")
            written = await client.create_credit("1", "10.00", note="demo goodwill")
            after = await _last_credit(client, "1")
            out.print(f"{escape(written.message)}: the API answered with the new entry.")
            out.print(
                f"balance from the ledger: {before.new_balance} -> {after.new_balance} "
                f"(last entry: {after.amount}, {escape(repr(after.note))})\n"
            )

            # 4. What errors look like.
            out.rule("[bold]4. Errors you will see")
            for amount in ("ten", "0"):
                out.print(f"$ inveterate --sandbox credits add 1 {amount} --yes")
                sent_before = len(sandbox.requests)
                try:
                    await client.create_credit("1", amount)
                except ValueError as exc:
                    out.print(f"  ValueError: {escape(str(exc))}")
                    out.print(
                        f"  refused before sending ({len(sandbox.requests) - sent_before} "
                        "requests reached the API); the CLI exits with 2\n"
                    )
            out.print("$ inveterate --sandbox credits add 1 5.00 --yes   (the server fails: 500)")
            sandbox.fail_next(500, method="POST")
            try:
                await client.create_credit("1", "5.00")
            except ServerError as exc:
                out.print(f"  {type(exc).__name__}: {escape(str(exc))}", soft_wrap=True)
                out.print(f"  outcome_unknown={exc.outcome_unknown}")
                out.print(
                    f"  [yellow]Warning: {escape(UNKNOWN_OUTCOME_HINT)}[/]; the CLI exits with 3"
                )
            check = await _last_credit(client, "1")
            applied = check.id != after.id
            verdict = (
                "it was applied: do not retry"
                if applied
                else "it was not applied this time: a retry is safe"
            )
            out.print(f"  checking the ledger: the last entry is {check.amount}, so {verdict}\n")
    finally:
        await sandbox.close()

    out.rule("[bold]done")
    out.print(
        f"Finished in {loop.time() - started:.1f} s. Next: `inveterate --sandbox credits list 1`, "
        "`inveterate sandbox` (a server for any language), or `inveterate --help`."
    )


@click.command("demo")
def demo_command() -> None:
    """A guided tour on an embedded sandbox (no key, a few seconds)."""
    run(run_demo())
