"""Real ``inveterate`` processes killed, terminated and starved, checked row by row.

The Sandbox serves from a thread of the test process, so it outlives every command run
against it (and can die and come back on the same port). Kill points are counted in
requests the server received, never in sleeps; every wait is bounded.
"""

from __future__ import annotations

import csv
import io
import random
import re
import resource
import shlex
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from .cli_support import (
    API_KEY,
    ThreadedSandbox,
    api,
    child_env,
    cli,
    free_port,
    output_of,
    spawned,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="POSIX signals and processes"
)

KILL_ROUNDS = 6
MEMBERS = 160
LATENCY = 0.015  # seconds a request, like a near network: a round spans a few checkpoints
PAGE_SIZE = "3"
CONCURRENCY = "4"


def seed(server: ThreadedSandbox, count: int) -> list[str]:
    """Members with ledgers of 0 to 24 credits: up to 8 pages each at --page-size 3."""
    members = []
    for n in range(1, count + 1):
        member = f"m{n}"
        amounts = [f"{n}.{k:02d}" for k in range(1, (n * 11) % 25 + 1)]
        if amounts:
            server.call(server.sandbox.add_credits, member, amounts)
        members.append(member)
    return members


def export_words(server: ThreadedSandbox, ids: Path, out: Path, state: Path) -> list[str]:
    """An export command, in the order the CLI prints it back in a resume hint."""
    return [
        "--base-url", server.base_url, "credits", "export", "--ids-file", str(ids),
        "--out", str(out), "--format", "csv", "--state", str(state),
        "--concurrency", CONCURRENCY, "--page-size", PAGE_SIZE,
    ]  # fmt: skip


def resume_words(stderr: str) -> list[str]:
    """The resume command printed on stderr, without the leading ``inveterate``."""
    (line,) = [line for line in stderr.splitlines() if "run the same command: " in line]
    return shlex.split(line.split("run the same command: ", 1)[1])[1:]


def clean_export(server: ThreadedSandbox, ids: Path, out: Path) -> bytes:
    result = api(
        server, "credits", "export", "--ids-file", str(ids), "--out", str(out),
        "--page-size", PAGE_SIZE, "--concurrency", CONCURRENCY,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out.read_bytes()


def row_keys(data: bytes) -> list[tuple[str, str]]:
    """(member_id, credit id) of every row."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    return [(row["member_id"], row["id"]) for row in reader]


def compare(final: bytes, clean: bytes) -> dict[str, int]:
    """Rows compared, duplicates and losses of ``final`` against the clean export."""
    counts = Counter(row_keys(final))
    expected = row_keys(clean)
    return {
        "rows_compared": len(expected),
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "losses": sum(1 for key in expected if key not in counts),
        "extra": sum(1 for key in counts if key not in set(expected)),
    }


def saved_rows(state: Path) -> int:
    """Rows the state file says are saved (0 if it has no export yet)."""
    if not state.exists():
        return 0
    # Closed at once: an export holds its state file's lock alone, and refuses to start
    # while any other connection has it open.
    with closing(sqlite3.connect(state)) as db:
        row = db.execute("SELECT rows FROM export").fetchone()
    return 0 if row is None else int(row[0])


@pytest.fixture
def server() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


def test_export_killed_and_terminated_at_random_points_resumes_to_the_same_bytes(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    rng = random.Random(9)
    members = seed(server, MEMBERS)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(members) + "\n", encoding="utf-8")
    clean = clean_export(server, ids, tmp_path / "clean.csv")
    server.call(setattr, server.sandbox, "latency", LATENCY)
    out, state = tmp_path / "all.csv", tmp_path / "all.state"
    words = export_words(server, ids, out, state)
    signals = [signal.SIGKILL, signal.SIGTERM] * (KILL_ROUNDS // 2)
    rng.shuffle(signals)
    rounds = []
    # First a SIGKILL right after the start, before any periodic checkpoint: only the one
    # the export starts with exists then.
    for number, signum in enumerate([signal.SIGKILL, *signals]):
        server.call(server.sandbox.reset_stats)
        kill_after = rng.randint(30, 90) if number else 3
        logs = tmp_path / f"round{number}"
        with spawned(cli(*words), logs) as proc:

            def reached(proc: subprocess.Popen[bytes] = proc, requests: int = kill_after) -> bool:
                return server.request_count() >= requests or proc.poll() is not None

            wait_until(reached, what=f"{kill_after} requests")
            proc.send_signal(signum)
            code = proc.wait(timeout=30)
        stderr = output_of(logs)[1]
        assert "Traceback" not in stderr
        assert API_KEY not in stderr
        assert not out.exists()  # never renamed into place before the end
        if signum == signal.SIGTERM:
            assert code == 143, stderr
            assert stderr.startswith("interrupted: ")
            assert f"({out} is not written yet)" in stderr.splitlines()[0]
            assert resume_words(stderr) == words  # the exact command again
        else:
            assert code == -signal.SIGKILL
        rounds.append((signum.name, kill_after, saved_rows(state)))

    with spawned(cli(*words), tmp_path / "final") as proc:
        assert proc.wait(timeout=60) == 0, output_of(tmp_path / "final")[1]

    final = out.read_bytes()
    figures = compare(final, clean)
    print(f"\nkill/resume rounds (signal, kill after N requests, rows saved): {rounds}")
    print(f"figures: {figures}")
    assert figures == {
        "rows_compared": len(row_keys(clean)),
        "duplicates": 0,
        "losses": 0,
        "extra": 0,
    }
    assert final == clean
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [
        "all.csv",
        "clean.csv",
        "ids.txt",
    ]


def test_a_server_that_dies_mid_export_ends_it_in_seconds_with_a_resume_command(
    tmp_path: Path,
) -> None:
    with ThreadedSandbox(port=free_port()) as server:
        members = seed(server, 100)
        ids = tmp_path / "ids.txt"
        ids.write_text("\n".join(members) + "\n", encoding="utf-8")
        clean = clean_export(server, ids, tmp_path / "clean.csv")
        server.call(setattr, server.sandbox, "latency", LATENCY)
        out, state = tmp_path / "all.csv", tmp_path / "all.state"
        words = export_words(server, ids, out, state)
        server.call(server.sandbox.reset_stats)

        with spawned(cli("-v", *words), tmp_path / "dies") as proc:
            wait_until(lambda: server.request_count() >= 40, what="40 requests")
            server.stop()
            code = proc.wait(timeout=60)
        stderr = output_of(tmp_path / "dies")[1]

        assert code == 1, stderr
        errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
        assert errors == [
            next(line for line in stderr.splitlines() if "StreamAbortedError" in line)
        ]
        assert (
            "stopped after 5 members in a row failed because the API cannot be reached"
            in (errors[0])
        )
        # Attempts after the death: a few members (those in flight and the five of the
        # streak), each with its retries; not one per member.
        failed_attempts = re.findall(r"-> APIConnectionError \(attempt", stderr)
        assert 5 <= len(failed_attempts) <= (int(CONCURRENCY) + 5) * 3
        assert API_KEY not in stderr

        server.start()  # the same port, the same ledgers and cursors
        with spawned(cli(*resume_words(stderr)), tmp_path / "resumed") as proc:
            assert proc.wait(timeout=60) == 0, output_of(tmp_path / "resumed")[1]

    assert out.read_bytes() == clean


def test_sigterm_during_add_warns_that_it_may_have_been_applied(
    tmp_path: Path,
) -> None:
    server = ThreadedSandbox(latency=30)  # the POST would be answered after the test
    add = ["credits", "add", "42", "1.00", "--yes"]
    with server, spawned(cli("--base-url", server.base_url, *add), tmp_path) as proc:
        wait_until(lambda: len(server.requests("POST")) == 1, what="the POST")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)

    stdout, stderr = output_of(tmp_path)
    assert code == 143
    assert stdout == ""
    assert stderr == (
        "interrupted: the credit may have been applied: check the ledger before retrying "
        f"(inveterate --base-url {server.base_url} credits list 42)\n"
    )


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_list_prints_where_to_resume(
    server: ThreadedSandbox, tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    server.call(server.sandbox.add_credits, "42", [f"{n}.00" for n in range(1, 200)])
    server.call(setattr, server.sandbox, "latency", LATENCY)
    argv = cli("--base-url", server.base_url, "credits", "list", "42", "--page-size", "2")

    with spawned(argv, tmp_path) as proc:
        wait_until(lambda: server.request_count() >= 5, what="5 pages")
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == code

    stdout, stderr = output_of(tmp_path)
    printed = len(stdout.splitlines())
    first, second = stderr.splitlines()
    assert first == "interrupted"
    assert second.startswith(f"{printed} credits printed; to resume after them (same options): ")
    assert printed >= 2


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ids_from_stdin_that_stays_open_stop_at_once_on_a_signal(
    server: ThreadedSandbox, tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    server.call(server.sandbox.add_credits, "1", ["1.00"])
    argv = cli("--base-url", server.base_url, "credits", "export", "--ids-file", "-", "--out", "-")

    with spawned(argv, tmp_path, stdin=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        proc.stdin.write(b"1\n")
        proc.stdin.flush()  # and the pipe stays open: the export waits for more ids
        wait_until(lambda: len(output_of(tmp_path)[0].splitlines()) == 2, what="member 1")
        proc.send_signal(signum)
        assert proc.wait(timeout=30) == code

    stdout, stderr = output_of(tmp_path)
    assert stderr == "interrupted: 1 credit of 1 member were written to stdout (incomplete)\n"
    assert stdout.splitlines()[1].startswith("1,2024-03-01T12:00:00Z,1.00,")


@pytest.mark.parametrize("command", ["export", "list"])
def test_a_closed_pipe_is_one_line(server: ThreadedSandbox, tmp_path: Path, command: str) -> None:
    if command == "export":
        members = server.call(server.sandbox.seed_members, 2000)
        words = ["credits", "export", *members, "--out", "-"]
    else:
        server.call(server.sandbox.add_credits, "7", ["1.00"] * 5000)
        words = ["credits", "list", "7", "--page-size", "500"]
    with (tmp_path / "stderr").open("wb") as err:
        proc = subprocess.Popen(
            cli("--base-url", server.base_url, *words),
            stdout=subprocess.PIPE,
            stderr=err,
            env=child_env(),
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline()
            proc.stdout.close()  # the reader goes away, like `| head -1`
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert code == 1
    stderr = (tmp_path / "stderr").read_text(encoding="utf-8")
    assert stderr == "Error: cannot write stdout: the reader closed the pipe\n"


def test_a_file_too_large_keeps_yesterdays_export_and_resumes_when_there_is_room(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    members = server.call(server.sandbox.seed_members, 300)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(members) + "\n", encoding="utf-8")
    clean = clean_export(server, ids, tmp_path / "clean.csv")
    out, state = tmp_path / "all.csv", tmp_path / "all.state"
    out.write_text("yesterday\n", encoding="utf-8")
    words = [*export_words(server, ids, out, state)[:-4], "--force"]
    limit = len(clean) // 3

    def small_disk() -> None:  # in the child: files stop growing at `limit` bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    with spawned(cli(*words), tmp_path / "full", preexec_fn=small_disk) as proc:
        code = proc.wait(timeout=60)
    stderr = output_of(tmp_path / "full")[1]

    assert code == 1, stderr
    first, *rest = stderr.splitlines()
    assert first == f"Error: cannot write {out}: File too large"
    assert rest[-1].startswith("to resume once that is fixed, run the same command: ")
    assert out.read_text(encoding="utf-8") == "yesterday\n"

    with spawned(cli(*resume_words(stderr)), tmp_path / "room") as proc:
        assert proc.wait(timeout=60) == 0, output_of(tmp_path / "room")[1]
    assert out.read_bytes() == clean


def test_inveterate_log_debug_prints_the_sdk_log_without_the_key(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    server.call(server.sandbox.add_credits, "1", ["1.00"])
    argv = cli("--base-url", server.base_url, "credits", "list", "1")

    with spawned(argv, tmp_path, env=child_env(INVETERATE_LOG="debug")) as proc:
        assert proc.wait(timeout=30) == 0

    stdout, stderr = output_of(tmp_path)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z inveterate_async DEBUG: GET "
        r"/v2\.0/admin/members/1/credits -> 200 \(attempt 1, [\d.]+ ms\)\n",
        stderr,
    )
    assert API_KEY not in stderr
    assert len(stdout.splitlines()) == 1
