"""``export_credits``, the library's resumable export, against a real Sandbox: CSV and JSON
Lines end to end, typed errors before anything is sent, and a real process SIGKILLed at
random points and resumed until the file is the same bytes as a clean export."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from inveterate_async import (
    ExportOutputError,
    ExportProgress,
    ExportStateError,
    InveterateClient,
    LedgerPosition,
    StreamAbortedError,
    export_credits,
)
from inveterate_async._export.state import Checkpoint, StateFile
from inveterate_async.testing import Sandbox

from .cli_support import ThreadedSandbox, child_env, output_of, spawned, wait_until
from .conftest import API_KEY

HEADER = "member_id,created_at,amount,new_balance,reason,note,id"


def seed(sandbox: Sandbox, count: int) -> list[str]:
    """Members ``m1``... with 0 to 12 credits (``m3`` has none)."""
    members = []
    for n in range(1, count + 1):
        amounts = [f"{n}.{k:02d}" for k in range(1, (n * 5) % 13 + 1)]
        if amounts:
            sandbox.add_credits(f"m{n}", amounts)
        members.append(f"m{n}")
    return members


def expected(sandbox: Sandbox, members: list[str]) -> list[tuple[str, str, str]]:
    """(member, amount, id) of every credit of ``members``, in export order."""
    return [
        (member, str(entry["amount"]), entry["id"])
        for member in members
        for entry in sandbox.ledger(member)
    ]


def csv_keys(data: bytes) -> list[tuple[str, str, str]]:
    rows = csv.DictReader(io.StringIO(data.decode(), newline=""))
    return [(row["member_id"], row["amount"], row["id"]) for row in rows]


async def test_csv_export_writes_every_member_in_order_and_reports_it(
    sandbox: Sandbox, client: InveterateClient, tmp_path: Path
) -> None:
    members = seed(sandbox, 12)
    out = tmp_path / "credits.csv"
    seen: list[ExportProgress] = []

    report = await export_credits(
        client, members, out, page_size=2, concurrency=4, on_progress=seen.append
    )

    data = out.read_bytes()
    assert data.decode().splitlines()[0] == HEADER
    assert csv_keys(data) == expected(sandbox, members)
    assert (report.credits, report.members, report.failures) == (len(csv_keys(data)), 12, ())
    assert seen[-1] == ExportProgress(12, report.credits, 12, 0, None)
    assert os.listdir(tmp_path) == ["credits.csv"]  # no partial file left

    stream = io.BytesIO()
    again = await export_credits(client, [*members, "m1"], stream, page_size=5)
    assert stream.getvalue() == data  # a stream gets the same bytes
    assert again.duplicates == 1


def state_files(folder: Path) -> list[bytes]:
    """The bytes of the state file and its write-ahead log, as they are on disk."""
    return [path.read_bytes() for path in folder.glob("export.state*")]


def file_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_the_state_file_is_private_while_the_export_runs(
    sandbox: Sandbox, client: InveterateClient, tmp_path: Path
) -> None:
    members = seed(sandbox, 6)
    state = tmp_path / "export.state"
    modes: set[int] = set()

    def look(progress: ExportProgress) -> None:
        modes.update(file_mode(p) for p in tmp_path.glob("export.state*"))

    await export_credits(
        client, members, tmp_path / "out.csv", state=state, page_size=2, on_progress=look
    )
    assert modes == {0o600}  # the file and its write-ahead log
    assert not state.exists()  # deleted once complete


async def test_a_cursor_holding_the_key_is_never_written_to_the_state_file(
    tmp_path: Path,
) -> None:
    # A server that echoes the key in its cursors (a misconfigured proxy, say); the export
    # is stopped inside a member, when a checkpoint would keep that member's cursor.
    def leaky(member: str, entry: Mapping[str, Any]) -> str:
        return f"{entry['id']}|{API_KEY}"

    state = tmp_path / "export.state"
    async with Sandbox(api_key=API_KEY, cursor_factory=leaky) as echoing:
        echoing.add_credits("m1", [str(n) for n in range(1, 9)])
        async with InveterateClient(API_KEY, base_url=echoing.base_url) as client:
            task: asyncio.Task[Any] | None = None

            def stop_inside_the_member(progress: ExportProgress) -> None:
                if progress.credits >= 2 and task is not None:
                    task.cancel()

            task = asyncio.ensure_future(
                export_credits(
                    client,
                    ["m1"],
                    tmp_path / "out.csv",
                    state=state,
                    page_size=1,
                    on_progress=stop_inside_the_member,
                )
            )
            with pytest.raises(asyncio.CancelledError):
                await task
    saved = state_files(tmp_path)
    assert saved  # stopped: the state is kept for a resume...
    assert not any(API_KEY.encode() in data for data in saved)  # ...without the key


def test_a_checkpoint_whose_cursor_holds_the_key_is_refused(tmp_path: Path) -> None:
    state = StateFile(str(tmp_path / "s.state"), {"out": "x"}, lambda text: API_KEY in text)
    try:
        state.start(str(tmp_path / ".x.partial"), Checkpoint())
        leaky = Checkpoint(head_id="m1", head_position=LedgerPosition.after(f"c|{API_KEY}"))
        with pytest.raises(ExportStateError) as raised:
            state.save(leaky)
        assert raised.value.problem == "cursor_holds_key"
        assert API_KEY not in str(raised.value)
        state.save(Checkpoint(head_id="m1", head_position=LedgerPosition.after("c|fine")))
    finally:
        state.close()
    assert API_KEY.encode() not in (tmp_path / "s.state").read_bytes()


async def test_jsonl_amounts_can_be_written_as_strings(
    sandbox: Sandbox, client: InveterateClient, tmp_path: Path
) -> None:
    sandbox.add_credits("big", ["99999999999999999999.99", "-0.01"])
    out = tmp_path / "big.jsonl"
    await export_credits(client, ["big"], out, amounts_as_strings=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # Plain json.loads keeps strings exact; as numbers it would give 1e+20.
    assert [(r["amount"], r["new_balance"]) for r in rows] == [
        ("99999999999999999999.99", "99999999999999999999.99"),
        ("-0.01", "99999999999999999999.98"),
    ]
    numbers = tmp_path / "numbers.jsonl"
    await export_credits(client, ["big"], numbers)
    assert json.loads(numbers.read_text().splitlines()[0])["amount"] == 1e20
    with pytest.raises(ValueError, match="for JSON Lines"):
        await export_credits(client, ["big"], tmp_path / "x.csv", amounts_as_strings=True)
    assert not (tmp_path / "x.csv").exists()


async def test_jsonl_export_keeps_exact_money_and_lists_failures(
    sandbox: Sandbox, client: InveterateClient, tmp_path: Path
) -> None:
    members = seed(sandbox, 8)
    sandbox.fail_next(404, customer_id="m4", times=3)
    out = tmp_path / "credits.ndjson"  # JSON Lines, by its suffix

    async def ids() -> AsyncIterator[int | str]:
        for member in members:
            yield member

    report = await export_credits(client, ids(), out, page_size=3)

    rows = [json.loads(line, parse_float=Decimal) for line in out.read_text().splitlines()]
    assert list(rows[0]) == HEADER.split(",")
    assert all(isinstance(row["amount"], Decimal) for row in rows)
    kept = [m for m in members if m != "m4"]
    assert [(r["member_id"], str(r["amount"]), r["id"]) for r in rows] == expected(sandbox, kept)
    assert [(f.index, f.member_id) for f in report.failures] == [(3, "m4")]
    assert report.failures[0].error.startswith("NotFoundError: ")
    assert report.members == 7


@pytest.mark.parametrize(
    ("ids", "options", "message"),
    [
        ("42", {}, "not a single str"),
        (42, {}, "must be iterable"),
        (["1", None], {}, "must be a str or an int"),
        (["1", True], {}, "must be a str or an int"),
        (["1", " "], {}, "must not be empty"),
        (["1"], {"format": "xml"}, 'format must be "csv" or "jsonl"'),
        (["1"], {"concurrency": 0}, "concurrency must be a positive int"),
        (["1"], {"page_size": 1.5}, "page_size must be a positive int"),
        (["1"], {"abort_after": 0}, "abort_after must be a positive int"),
        (["1"], {"out": 42}, "out must be a file path or a binary stream"),
        (["1"], {"out": io.BytesIO(), "state": "s.db"}, "state needs out to be a file"),
        (["1"], {"state": "x.csv"}, "state must not be the output file"),
    ],
)
async def test_bad_arguments_are_value_errors_before_anything_is_sent(
    sandbox: Sandbox,
    client: InveterateClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ids: Any,
    options: dict[str, Any],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    out = options.pop("out", "x.csv")
    with pytest.raises(ValueError, match=message):
        await export_credits(client, ids, out, **options)
    assert sandbox.requests == []
    assert os.listdir(tmp_path) == []


async def test_files_that_cannot_be_used_are_typed_errors(
    sandbox: Sandbox, client: InveterateClient, tmp_path: Path
) -> None:
    members = seed(sandbox, 3)
    out = tmp_path / "x.csv"
    out.write_text("yesterday\n")
    with pytest.raises(ExportOutputError, match="pass overwrite=True") as exists:
        await export_credits(client, members, out)
    with pytest.raises(ExportOutputError) as no_directory:
        await export_credits(client, members, tmp_path / "no" / "x.csv")
    not_state = tmp_path / "s.db"
    not_state.write_bytes(b"not sqlite" * 100)
    with pytest.raises(ExportStateError) as garbage:
        await export_credits(client, members, out, state=not_state, overwrite=True)
    assert (exists.value.problem, no_directory.value.problem) == ("exists", "no_directory")
    assert (garbage.value.problem, garbage.value.path) == ("not_a_state_file", str(not_state))
    assert sandbox.requests == []
    assert out.read_text() == "yesterday\n"

    other = tmp_path / "other.db"
    issued: list[str] = []

    def rotate_the_key_in_m2(member: str, entry: Mapping[str, Any]) -> str:
        issued.append(entry["id"])
        if len(issued) == 3:  # m1's two cursors, then m2's first
            sandbox.api_key = "rotated"  # every request from now on is refused
        return f"{member}:{entry['id']}"

    sandbox.cursor_factory = rotate_the_key_in_m2
    with pytest.raises(StreamAbortedError):  # the state is kept: m1 done, m2 begun
        await export_credits(
            client, members, out, state=other, overwrite=True, page_size=2, concurrency=1,
            abort_after=2,
        )  # fmt: skip
    with pytest.raises(ExportStateError) as format_changed:
        await export_credits(client, members, out, state=other, overwrite=True, format="jsonl")
    assert format_changed.value.problem == "other_export"
    with pytest.raises(ExportStateError) as ids_changed:
        await export_credits(client, members[::-1], out, state=other, overwrite=True)
    assert ids_changed.value.problem == "ids_changed"
    sandbox.api_key = API_KEY
    report = await export_credits(client, members, out, state=other, overwrite=True, page_size=2)
    assert csv_keys(out.read_bytes()) == expected(sandbox, members)
    assert report.members == 3
    assert sorted(os.listdir(tmp_path)) == ["s.db", "x.csv"]  # the state file is gone


# --- a real process, killed and resumed ------------------------------------------------

KILL_ROUNDS = 5
MEMBERS = 120
LATENCY = 0.01  # seconds a request: a round spans a few checkpoints

CHILD = """
import asyncio, sys
from inveterate_async import InveterateClient, export_credits

base_url, ids, out, state = sys.argv[1:]

async def main() -> None:
    with open(ids) as file:
        members = file.read().split()
    async with InveterateClient(base_url=base_url, max_retries=0) as client:
        await export_credits(
            client, members, out, state=state or None, page_size=3, concurrency=4
        )

asyncio.run(main())
"""


@pytest.fixture
def server() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


def child(server: ThreadedSandbox, ids: Path, out: Path, state: Path | None) -> list[str]:
    argv = [server.base_url, str(ids), str(out), "" if state is None else str(state)]
    return [sys.executable, "-c", CHILD, *argv]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals and processes")
def test_an_export_killed_at_random_points_resumes_to_the_bytes_of_a_clean_one(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    rng = random.Random(7)
    members = server.call(seed, server.sandbox, MEMBERS)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(members) + "\n")
    env = {**child_env(), "INVETERATE_API_KEY": server.sandbox.api_key}
    clean = tmp_path / "clean.csv"
    with spawned(child(server, ids, clean, None), tmp_path / "clean", env=env) as proc:
        assert proc.wait(timeout=60) == 0, output_of(tmp_path / "clean")[1]
    server.call(setattr, server.sandbox, "latency", LATENCY)
    out, state = tmp_path / "all.csv", tmp_path / "all.state"
    total = server.request_count()
    kills = []
    for number in range(KILL_ROUNDS):
        server.call(server.sandbox.reset_stats)
        kill_after = rng.randint(3, 40)
        logs = tmp_path / f"round{number}"
        with spawned(child(server, ids, out, state), logs, env=env) as proc:

            def reached(proc: subprocess.Popen[bytes] = proc, requests: int = kill_after) -> bool:
                return server.request_count() >= requests or proc.poll() is not None

            wait_until(reached, what=f"{kill_after} requests")
            proc.send_signal(signal.SIGKILL)
            code = proc.wait(timeout=30)
        assert code == -signal.SIGKILL, output_of(logs)[1]
        kills.append(kill_after)
        assert not out.exists()  # never in place before the end
    with spawned(child(server, ids, out, state), tmp_path / "final", env=env) as proc:
        assert proc.wait(timeout=60) == 0, output_of(tmp_path / "final")[1]

    print(f"\nkilled after {kills} requests of a {total}-request export")
    assert out.read_bytes() == clean.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "all.csv",
        "clean.csv",
        "ids.txt",
    ]
