"""examples/export_worker.py, run as a real process, SIGKILLed halfway and restarted: every
credit exactly once, each member's credits in ledger order."""

from __future__ import annotations

import json
import signal
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cli_support import ThreadedSandbox, output_of, spawned, wait_until

WORKER = Path(__file__).resolve().parent.parent / "examples" / "export_worker.py"

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


@pytest.fixture
def server() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


def lines_of(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_the_worker_killed_halfway_resumes_with_every_credit_once_in_order(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    members = []
    for n in range(1, 61):
        amounts = [f"{n}.{k:02d}" for k in range(1, (n * 7) % 19 + 1)]
        if amounts:
            server.call(server.sandbox.add_credits, f"m{n}", amounts)
        members.append(f"m{n}")
    ledgers = {member: server.ledger_ids(member) for member in members}
    total = sum(len(ids) for ids in ledgers.values())
    server.call(setattr, server.sandbox, "latency", 0.01)
    ids = tmp_path / "members.txt"
    ids.write_text("\n".join(members) + "\n", encoding="utf-8")
    out, state = tmp_path / "credits.jsonl", tmp_path / "worker.db"
    argv = [
        sys.executable, str(WORKER), "--base-url", server.base_url, "--ids-file", str(ids),
        "--out", str(out), "--state", str(state), "--page-size", "3", "--concurrency", "4",
    ]  # fmt: skip

    with spawned(argv, tmp_path / "killed") as proc:
        wait_until(lambda: len(lines_of(out)) >= total // 2, what="half the credits")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    written_before_restart = len(lines_of(out))
    with spawned(argv, tmp_path / "restarted") as proc:
        assert proc.wait(timeout=60) == 0, output_of(tmp_path / "restarted")[1]

    rows = lines_of(out)
    per_member: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        per_member[row["member_id"]].append(row["id"])
    got = {(row["member_id"], row["id"]) for row in rows}
    expected = {(member, credit) for member, ids in ledgers.items() for credit in ids}
    duplicates, losses = len(rows) - len(got), len(expected - got)
    print(
        f"\nworker: {total} rows compared, {duplicates} duplicates, {losses} losses; "
        f"{written_before_restart} written before the SIGKILL"
    )
    assert written_before_restart >= total // 2
    assert (duplicates, losses, len(rows)) == (0, 0, total)
    assert {m: per_member.get(m, []) for m in members} == ledgers  # exactly, in ledger order
    assert output_of(tmp_path / "restarted")[1] == "done: 60 members exported, 0 failed\n"


def test_the_worker_refuses_an_output_its_state_does_not_know(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    ids = tmp_path / "members.txt"
    ids.write_text("1\n", encoding="utf-8")
    out = tmp_path / "credits.jsonl"
    out.write_text("someone else's file\n", encoding="utf-8")
    argv = [
        sys.executable, str(WORKER), "--base-url", server.base_url, "--ids-file", str(ids),
        "--out", str(out), "--state", str(tmp_path / "w.db"),
    ]  # fmt: skip

    with spawned(argv, tmp_path / "logs") as proc:
        assert proc.wait(timeout=30) == 1

    assert "exists but the state file knows nothing of it" in output_of(tmp_path / "logs")[1]
    assert out.read_text(encoding="utf-8") == "someone else's file\n"
    assert server.requests() == []
