"""The real ``inveterate credits apply`` process, killed: SIGKILL at random moments then
re-run until done, SIGTERM and Ctrl-C mid-flight, and two processes on one journal.

The sandbox runs in a thread of the test process, so it outlives every CLI process. After
each kill the test checks the sandbox's ledger row by row: no ref applied twice, none lost.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from inveterate_async.testing import RecordedRequest

from .bulk_helpers import refs_written
from .cli_support import API_KEY, ThreadedSandbox

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROWS = 1000
CRASH_RUNS = 5
KILLS_PER_RUN = 3
SETTLE = "1"  # seconds: far longer than the sandbox takes to apply a write it received


@pytest.fixture(name="server")
def threaded_sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


@attrs.frozen
class Batch:
    path: Path
    journal: Path
    members: list[str]
    amounts: dict[str, tuple[str, Decimal]]  # ref -> (member, amount): unique per row


def make_batch(tmp_path: Path, prefix: str, rows: int = ROWS) -> Batch:
    lines = ["ref,member_id,amount,note,force"]
    amounts = {}
    for n in range(rows):
        ref, member = f"{prefix}:{n}", f"{prefix}-{n % 250}"
        amount = f"{n // 100 + 1}.{n % 100:02d}"  # 1.00 to 10.99: one amount per row
        lines.append(f"{ref},{member},{amount},Crash test,")
        amounts[ref] = (member, Decimal(amount))
    path = tmp_path / f"{prefix}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    members = sorted({member for member, _ in amounts.values()})
    return Batch(path, tmp_path / f"{prefix}.sqlite", members, amounts)


def cli(server: ThreadedSandbox, batch: Batch, *options: str) -> list[str]:
    """The ``credits apply`` command line for ``batch``."""
    return [
        *(sys.executable, "-m", "inveterate_async.cli", "--api-key", API_KEY),
        *("--base-url", server.base_url, "--max-retries", "0", "credits", "apply"),
        *(str(batch.path), "--journal", str(batch.journal), "--yes", *options),
    ]


def start(
    server: ThreadedSandbox, batch: Batch, tmp_path: Path, *options: str
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVETERATE_")}
    command = cli(server, batch, *options)
    out = (tmp_path / "out.txt").open("wb")
    err = (tmp_path / "err.txt").open("wb")
    with out, err:
        return subprocess.Popen(command, stdout=out, stderr=err, env=env)


def stderr(tmp_path: Path) -> str:
    return (tmp_path / "err.txt").read_text(encoding="utf-8", errors="replace")


def post_count(server: ThreadedSandbox) -> int:
    return server.call(lambda: sum(1 for r in server.sandbox.requests if r.method == "POST"))


def wait_until_idle(server: ThreadedSandbox) -> None:
    """Until the sandbox has handled every request it received (the API has settled)."""
    deadline = time.monotonic() + 30
    while server.call(lambda: server.sandbox.in_flight) and time.monotonic() < deadline:
        time.sleep(0.01)


def kill_when(proc: subprocess.Popen[bytes], ready: threading.Event | None, after: float) -> None:
    """SIGKILL ``proc`` once ``ready`` is set or ``after`` seconds passed, unless it ended."""
    deadline = time.monotonic() + after
    while proc.poll() is None and time.monotonic() < deadline:
        if ready is not None and ready.wait(0.005):
            break
        if ready is None:
            time.sleep(0.005)
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)


def api_credits(server: ThreadedSandbox, members: list[str]) -> Counter[tuple[str, Decimal]]:
    def collect() -> Counter[tuple[str, Decimal]]:
        return Counter(
            (member, entry["amount"])
            for member in members
            for entry in server.sandbox.ledger(member)
            if entry["reason"] == "api"
        )

    return server.call(collect)


def journal_states(path: Path) -> Counter[str]:
    connection = sqlite3.connect(path)
    try:
        return Counter(state for (state,) in connection.execute("SELECT state FROM adjustments"))
    finally:
        connection.close()


class PostTrigger:
    """Sets an event when the sandbox has received ``count`` more POSTs (on its thread)."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.event = threading.Event()

    def __call__(self, request: RecordedRequest) -> bool:
        self.remaining -= 1
        if self.remaining <= 0:
            self.event.set()
        return False  # observes only: never answers the request


@pytest.mark.parametrize("run", range(CRASH_RUNS))
def test_sigkill_at_random_moments_then_rerun_until_done(
    server: ThreadedSandbox, tmp_path: Path, run: int
) -> None:
    rng = random.Random(run)
    tagged = run % 2 == 0
    batch = make_batch(tmp_path, f"crash{run}")
    options = ["--settle", SETTLE, "--resend-unconfirmed", *(["--tag-notes"] if tagged else [])]
    processes = kills = 0
    while True:
        processes += 1
        trigger = None
        if kills < KILLS_PER_RUN and rng.random() < 0.7:
            # Mid-sending: after a random number of this process's POSTs reached the API.
            trigger = PostTrigger(rng.randint(1, 300))
            server.call(server.sandbox.fail_next, method="POST", match=trigger)
        proc = start(server, batch, tmp_path, *options)
        if kills < KILLS_PER_RUN:
            # Otherwise at a random moment: starting, reconciling, sending.
            kill_when(proc, trigger.event if trigger else None, rng.uniform(0.2, 2.5))
        else:
            proc.wait(timeout=300)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, stderr(tmp_path)
        kills += 1
        if trigger is not None:
            trigger.remaining = 10**9  # the observer stays queued but never fires again
        wait_until_idle(server)

    written = api_credits(server, batch.members)
    wanted = Counter(batch.amounts.values())
    twice = sum(count - 1 for count in written.values() if count > 1)
    lost = sum(1 for key in wanted if written[key] == 0)
    extra = sum(1 for key in written if key not in wanted)
    figures = (
        f"crash run {run} ({'tagged' if tagged else 'untagged'}): rows {ROWS}, "
        f"processes {processes}, SIGKILLs {kills}, POSTs {post_count(server)}, "
        f"applied twice {twice}, lost {lost}"
    )
    print(figures)
    assert (twice, lost, extra) == (0, 0, 0), figures
    assert written == wanted, figures
    if tagged:
        tags = server.call(refs_written, server.sandbox, batch.members)
        assert tags == Counter(list(batch.amounts)), figures
    assert journal_states(batch.journal) == {"applied": ROWS}, figures
    assert "Traceback" not in stderr(tmp_path)


def hold_posts(server: ThreadedSandbox, count: int) -> threading.Event:
    """The next ``count`` POSTs are applied, then get no answer; the event is set when all
    of them arrived."""
    arrived = PostTrigger(count)

    def hold(request: RecordedRequest) -> bool:
        arrived(request)
        return True

    server.call(
        server.sandbox.fail_next,
        201,
        method="POST",
        apply=True,
        delay=60,
        times=count,
        match=hold,
    )
    return arrived.event


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_sigterm_and_ctrl_c_leave_a_consistent_journal(
    server: ThreadedSandbox, tmp_path: Path, signum: int, code: int, word: str
) -> None:
    batch = make_batch(tmp_path, "stop", rows=100)
    in_flight = hold_posts(server, 8)
    proc = start(server, batch, tmp_path, "--settle", SETTLE)
    try:
        assert in_flight.wait(60), stderr(tmp_path)
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == code, stderr(tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    message = stderr(tmp_path).splitlines()[-1]
    assert message == (
        f"{word}: the journal {batch.journal} is consistent; run the same command again to "
        "resume (adjustments that were being sent are looked up in the ledger first)"
    )
    # The 8 POSTs in flight are unknown, the rest were never sent: none is left "sending".
    assert journal_states(batch.journal) == {"unknown": 8, "pending": 92}
    rerun = start(server, batch, tmp_path, "--settle", SETTLE)
    assert rerun.wait(timeout=120) == 0, stderr(tmp_path)
    assert api_credits(server, batch.members) == Counter(batch.amounts.values())
    assert post_count(server) == 100  # the 8 were found in the ledger, not sent again


def test_a_second_process_on_the_same_journal_refuses(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    batch = make_batch(tmp_path, "twice", rows=50)
    in_flight = hold_posts(server, 8)
    first = start(server, batch, tmp_path, "--settle", SETTLE)
    try:
        assert in_flight.wait(60), stderr(tmp_path)
        second = subprocess.run(
            cli(server, batch),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert f"is in use by pid {first.pid} on " in second.stderr
        assert "nothing was sent" in second.stderr
        assert post_count(server) == 8  # the second sent nothing
    finally:
        first.kill()
        first.wait()
    # The OS released the killed process's lock: the journal can be used again.
    rerun = start(server, batch, tmp_path, "--settle", SETTLE)
    assert rerun.wait(timeout=120) == 0, stderr(tmp_path)
    assert api_credits(server, batch.members) == Counter(batch.amounts.values())
