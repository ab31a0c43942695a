"""``inveterate credits export`` in-process (CliRunner) against a real Sandbox on a thread:
the order of the rows, atomic members, the overwrite guard, fail-fast, ids, state files.

The crash tests with real processes and signals are in ``test_cli_signals.py``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import shlex
import signal
import sqlite3
import stat
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from inveterate_async import CreditPage, LedgerPage
from inveterate_async._export import ordered as _exporter
from inveterate_async._export import target as _target
from inveterate_async._export.report import Tally
from inveterate_async._export.spool import Spool
from inveterate_async._export.state import Checkpoint, StateFile
from inveterate_async.cli._ids import looks_like_column_name
from inveterate_async.cli._output import EXPORT_COLUMNS

from .cli_support import (
    API_KEY,
    EXPORT_HEADER,
    ThreadedSandbox,
    api,
    fail_after_first_cursor,
    free_port,
    invoke,
    jsonl,
)


@pytest.fixture
def server() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


def expected_rows(server: ThreadedSandbox, members: Sequence[str]) -> list[list[str]]:
    """The rows a complete export of ``members`` must have, from the sandbox's ledgers."""
    rows = []
    for member in members:
        for entry in server.call(server.sandbox.ledger, member):
            rows.append(
                [
                    member,
                    entry["createdAt"].replace(".000Z", "Z"),
                    str(entry["amount"]),
                    str(entry["newBalance"]),
                    entry["reason"] or "",
                    entry["note"] or "",
                    entry["id"],
                ]
            )
    return rows


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as file:
        header, *rows = list(csv.reader(file))
    assert ",".join(header) == EXPORT_HEADER
    return rows


def seed_varied(server: ThreadedSandbox, count: int) -> list[str]:
    """Members ``m1``... with ledgers of 0 to 12 credits (several pages at --page-size 3)."""
    members = []
    for n in range(1, count + 1):
        member = f"m{n}"
        amounts = [f"{n}.{k:02d}" for k in range(1, (n * 7) % 13 + 1)]
        if amounts:
            server.call(server.sandbox.add_credits, member, amounts)
        members.append(member)
    return members


def identity_of(out: Path, server: ThreadedSandbox, fmt: str = "csv") -> dict[str, str]:
    """The identity a state file of an export to ``out`` records."""
    columns = ",".join(EXPORT_COLUMNS)
    return {"out": str(out), "format": fmt, "columns": columns, "api": server.base_url}


def hinted_command(stderr: str, lead: str) -> list[str]:
    """The arguments of the ``inveterate ...`` command printed after ``lead``."""
    for line in stderr.splitlines():
        if line.startswith(lead):
            words = shlex.split(line[line.index("inveterate") :])
            return words[1:]
    raise AssertionError(f"no {lead!r} line in {stderr!r}")


# --- order and completeness ---------------------------------------------------------


def test_members_are_written_in_the_order_of_their_ids(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    members = seed_varied(server, 40)
    order = members[::-1]  # not the sandbox's order
    out = tmp_path / "all.csv"

    result = api(
        server, "credits", "export", *order, "--out", str(out), "--page-size", "3",
        "--concurrency", "6",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert csv_rows(out) == expected_rows(server, order)
    total = len(expected_rows(server, order))
    assert result.stderr.startswith(f"exported {total} credits of 40 members to {out} in ")
    assert os.listdir(tmp_path) == ["all.csv"]  # no partial file left behind


def test_jsonl_rows_keep_exact_amounts_and_one_timestamp_format(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    server.call(server.sandbox.add_credits, "a", ["10.10", "-2.50"])
    server.call(server.sandbox.add_credits, "b", ["0.1"])
    out = tmp_path / "x.ndjson"

    result = api(server, "credits", "export", "a", "b", "--out", str(out))

    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("exported 3 credits of 2 members")
    rows = jsonl(out.read_text(encoding="utf-8"))
    assert [(r["member_id"], r["amount"]) for r in rows] == [
        ("a", Decimal("10.10")),
        ("a", Decimal("-2.50")),
        ("b", Decimal("0.1")),
    ]
    assert rows[0]["created_at"] == "2024-03-01T12:00:00Z"


def test_one_member_and_one_credit_are_singular(server: ThreadedSandbox, tmp_path: Path) -> None:
    server.call(server.sandbox.add_credits, "a", ["1.00"])

    result = api(server, "credits", "export", "a", "--out", str(tmp_path / "x.csv"))

    assert result.stderr.startswith("exported 1 credit of 1 member to ")


def test_stdout_gets_the_same_rows_in_the_same_order(server: ThreadedSandbox) -> None:
    members = seed_varied(server, 12)

    result = api(
        server, "credits", "export", *members, "--out", "-", "--page-size", "2",
        "--concurrency", "4",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    header, *rows = list(csv.reader(io.StringIO(result.stdout)))
    assert ",".join(header) == EXPORT_HEADER
    assert rows == expected_rows(server, members)


def test_pages_of_members_read_ahead_spill_to_disk_beyond_the_budget(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = seed_varied(server, 30)
    spools: list[Spool] = []

    def small_spool() -> Spool:
        spools.append(Spool(memory_bytes=256))
        return spools[-1]

    monkeypatch.setattr(_exporter, "Spool", small_spool)
    out = tmp_path / "all.csv"

    result = api(
        server, "credits", "export", *members, "--out", str(out), "--page-size", "2",
        "--concurrency", "8",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert csv_rows(out) == expected_rows(server, members)
    assert spools[0].bytes_in_memory == spools[0].bytes_on_disk == 0


def test_spool_keeps_chunks_per_key_in_order_within_the_budget() -> None:
    spool = Spool(memory_bytes=10)
    spool.add(1, b"aaaa")
    spool.add(2, b"bbbbbb")
    spool.add(1, b"cc")  # over budget: on disk
    spool.add(2, b"dd")
    assert spool.bytes_in_memory == 10
    assert spool.bytes_on_disk == 4

    assert list(spool.pop(1)) == [b"aaaa", b"cc"]
    assert spool.bytes_in_memory == 6
    assert spool.bytes_on_disk == 4  # "dd" still waits on disk
    spool.discard(2)
    assert (spool.bytes_in_memory, spool.bytes_on_disk) == (0, 0)  # the file was emptied
    assert list(spool.pop(3)) == []
    spool.add(4, b"0123456789x")
    assert list(spool.pop(4)) == [b"0123456789x"]
    spool.close()


# --- failures -----------------------------------------------------------------------


def test_a_failed_member_has_no_rows_and_its_id_feeds_back(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    members = seed_varied(server, 30)
    server.call(server.sandbox.fail_next, 500, times=1, customer_id="m17")
    fail_after_first_cursor(server, "m12")  # fails after its first page was read
    out = tmp_path / "all.csv"
    failed = tmp_path / "failed.txt"

    result = api(
        server, "credits", "export", *members, "--out", str(out), "--page-size", "3",
        "--failed-ids", str(failed),
    )  # fmt: skip

    assert result.exit_code == 1
    others = [m for m in members if m not in ("m12", "m17")]
    assert csv_rows(out) == expected_rows(server, others)
    lines = result.stderr.splitlines()
    assert lines[1] == f"Error: 2 of 30 members failed; none of their credits are in {out}:"
    assert lines[2].startswith("  m12: ServerError: HTTP 500")
    assert lines[3].startswith("  m17: ServerError: HTTP 500")
    assert failed.read_text(encoding="utf-8") == "m12\nm17\n"

    retry = hinted_command(result.stderr, f"their ids are in {failed}; to export just them")
    assert retry[retry.index("--ids-file") + 1] == str(failed)
    retried = invoke(["--api-key", API_KEY, *retry])

    assert retried.exit_code == 0, retried.stderr
    assert csv_rows(tmp_path / "all.retry.csv") == expected_rows(server, ["m12", "m17"])


def test_without_failed_ids_the_retry_hint_lists_the_ids(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    server.call(server.sandbox.add_credits, "a", ["1.00"])
    server.call(server.sandbox.fail_next, 500, customer_id="b")
    out = tmp_path / "x.jsonl"

    result = api(server, "credits", "export", "a", "b", "--out", str(out))

    assert result.exit_code == 1
    retry = hinted_command(result.stderr, "to export just them (same columns)")
    assert retry == [
        "--base-url", server.base_url, "--max-retries", "0", "credits", "export", "b",
        "--out", str(tmp_path / "x.retry.jsonl"), "--format", "jsonl",
    ]  # fmt: skip


def test_many_failures_are_summed_up(server: ThreadedSandbox, tmp_path: Path) -> None:
    members = [f"x{n}" for n in range(25)]
    server.call(server.sandbox.fail_next, 500, times=25)
    failed = tmp_path / "failed.txt"

    listed = api(server, "credits", "export", *members, "--out", str(tmp_path / "a.csv"))
    filed = api(
        server, "credits", "export", *members, "--out", str(tmp_path / "b.csv"),
        "--failed-ids", str(failed),
    )  # fmt: skip

    assert listed.exit_code == 1
    assert sum(line.startswith("  x") for line in listed.stderr.splitlines()) == 25
    assert "put the ids above in a file for --ids-file" in listed.stderr
    assert filed.exit_code == 0  # the faults were used up: every member is there
    assert failed.read_text(encoding="utf-8") == ""


def test_a_wrong_key_on_500_members_stops_after_a_handful_of_requests(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    members = server.call(server.sandbox.seed_members, 500)
    out = tmp_path / "all.csv"
    out.write_text("yesterday's export\n", encoding="utf-8")

    result = invoke(
        [
            "--api-key", "sk_wrong", "--base-url", server.base_url, "credits", "export",
            *members, "--out", str(out), "--force",
        ]
    )  # fmt: skip

    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "Error: StreamAbortedError: stopped after 5 members in a row failed because the API "
        "key was refused: BadRequestError: HTTP 400"
    )
    assert line.endswith(f"; nothing was written to {out} (0 credits of 0 members had been read)")
    assert len(server.requests()) <= 5 + 8  # abort_after, plus the requests in flight
    assert out.read_text(encoding="utf-8") == "yesterday's export\n"
    assert os.listdir(tmp_path) == ["all.csv"]


def test_an_api_that_is_not_there_stops_at_once(tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v2.0"

    result = invoke(
        [
            "--api-key", API_KEY, "--base-url", base_url, "--max-retries", "0",
            "credits", "export", *map(str, range(200)), "--out", str(tmp_path / "x.csv"),
        ]
    )  # fmt: skip

    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert "because the API cannot be reached: APIConnectionError" in line
    assert os.listdir(tmp_path) == []


def test_a_refused_key_that_passes_only_fails_that_member(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    members = seed_varied(server, 20)
    server.call(server.sandbox.fail_next, 401, customer_id="m3")  # one 401, then all is well
    out = tmp_path / "all.csv"

    result = api(server, "credits", "export", *members, "--out", str(out), "--page-size", "3")

    assert result.exit_code == 1
    assert "  m3: AuthenticationError: HTTP 401" in result.stderr
    assert csv_rows(out) == expected_rows(server, [m for m in members if m != "m3"])


# --- the output file ----------------------------------------------------------------


def test_an_existing_file_is_kept_without_force_and_nothing_is_sent(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    out = tmp_path / "all.csv"
    out.write_text("yesterday\n", encoding="utf-8")

    result = api(server, "credits", "export", "1", "--out", str(out))

    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: {out} exists: pass --force to replace it (it is replaced only when the new "
        "export is complete)\n"
    )
    assert out.read_text(encoding="utf-8") == "yesterday\n"
    assert server.requests() == []


def test_force_replaces_the_file_only_when_complete_and_keeps_its_mode(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    server.call(server.sandbox.add_credits, "1", ["1.00"])
    out = tmp_path / "all.csv"
    out.write_text("yesterday\n", encoding="utf-8")
    out.chmod(0o600)

    result = api(server, "credits", "export", "1", "--out", str(out), "--force")

    assert result.exit_code == 0, result.stderr
    assert csv_rows(out) == expected_rows(server, ["1"])
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_symbolic_link_is_followed_and_stays_a_link(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    server.call(server.sandbox.add_credits, "1", ["1.00"])
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "all.csv"
    real.write_text("yesterday\n", encoding="utf-8")
    link = tmp_path / "latest.csv"
    link.symlink_to(real)

    result = api(server, "credits", "export", "1", "--out", str(link), "--force")

    assert result.exit_code == 0, result.stderr
    assert link.is_symlink()
    assert csv_rows(real) == expected_rows(server, ["1"])


def test_a_wrong_base_url_leaves_yesterdays_export_alone(tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    out.write_text("yesterday\n", encoding="utf-8")

    result = invoke(
        ["--api-key", API_KEY, "--base-url", "http://example.com", "credits", "export", "1",
         "--out", str(out), "--force"]
    )  # fmt: skip

    assert result.exit_code == 2
    assert "base_url must use https" in result.stderr
    assert out.read_text(encoding="utf-8") == "yesterday\n"
    assert os.listdir(tmp_path) == ["all.csv"]


def test_a_full_disk_is_one_line(server: ThreadedSandbox) -> None:
    server.call(server.sandbox.add_credits, "1", ["1.00"] * 3)

    result = api(server, "credits", "export", "1", "--out", "/dev/full")

    assert result.exit_code == 1
    assert result.stderr == "Error: cannot write /dev/full: No space left on device\n"


def test_another_export_writing_the_same_file_is_refused(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    out = tmp_path / "all.csv"
    running = _target.OutputTarget(str(out)).open_new(b"")  # holds the partial file's lock
    try:
        result = api(server, "credits", "export", "1", "--out", str(out))
    finally:
        running.close()

    assert result.exit_code == 2
    assert result.stderr == f"Error: another export is writing {out}\n"
    assert server.requests() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x.csv"], "nothing to export"),
        (["1", "--out", "no/such/dir/x.csv"], "cannot write no/such/dir/x.csv: no directory"),
        (["1", "--out", "x.csv", "--skip-header"], "--skip-header is about the first line"),
        (["1", "--out", "-", "--state", "s.db"], "--state needs --out FILE"),
        (["1", "--out", "/dev/null", "--state", "s.db"], "--state needs --out FILE"),
        (["1", "--out", "x.csv", "--failed-ids", "no/such/f.txt"], "cannot write no/such/f.txt"),
        (["1", "--out", "x.csv", "--state", "x.csv"], "--state must not be the --out file"),
        (["1", "--out", "x.csv", "--failed-ids", "./x.csv"], "--failed-ids must not be the --out"),
    ],
)
def test_usage_errors_send_nothing_and_create_nothing(
    server: ThreadedSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)

    result = api(server, "credits", "export", *args)

    assert result.exit_code == 2
    assert message in result.stderr
    assert server.requests() == []
    assert os.listdir(tmp_path) == []


def test_state_cannot_resume_the_embedded_sandbox(tmp_path: Path) -> None:
    result = invoke(
        ["--sandbox", "credits", "export", "1", "--out", str(tmp_path / "x.csv"), "--state",
         str(tmp_path / "s.db")]
    )  # fmt: skip

    assert result.exit_code == 2
    assert "run `inveterate sandbox` and point --base-url at it" in result.stderr


# --- member ids ---------------------------------------------------------------------


def test_ids_file_blank_lines_spaces_and_duplicates(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    members = seed_varied(server, 6)
    ids = tmp_path / "ids.txt"
    ids.write_text("\ufeffm1\n\n  m2  \nm3\r\nm2\nm4\nm2\n\nm1\nm5", encoding="utf-8")
    out = tmp_path / "all.csv"

    result = api(server, "credits", "export", "m6", "--ids-file", str(ids), "--out", str(out))

    assert result.exit_code == 0, result.stderr
    assert csv_rows(out) == expected_rows(server, ["m6", *members[:5]])
    warning, summary = result.stderr.splitlines()
    assert warning == (
        "Warning: 2 member ids were listed more than once, exported once: m2 (3 times), "
        "m1 (2 times)"
    )
    assert summary.startswith("exported ")


def test_a_header_line_is_refused_with_a_hint_before_anything_is_sent(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.csv"
    ids.write_text("\nMember ID\n1\n2\n", encoding="utf-8")
    out = tmp_path / "all.csv"

    refused = api(server, "credits", "export", "--ids-file", str(ids), "--out", str(out))

    assert refused.exit_code == 2
    assert refused.stderr == (
        f"Error: {ids}: the first line 'Member ID' is a column name, not a member id: pass "
        "--skip-header to skip it\n"
    )
    assert server.requests() == []
    assert sorted(os.listdir(tmp_path)) == ["ids.csv"]

    server.call(server.sandbox.add_credits, "1", ["1.00"])
    skipped = api(
        server, "credits", "export", "--ids-file", str(ids), "--skip-header", "--out", str(out)
    )

    assert skipped.exit_code == 0, skipped.stderr
    assert [row[0] for row in csv_rows(out)] == ["1"]


@pytest.mark.parametrize(
    ("line", "header"),
    [
        ("id", True),
        ("member_id", True),
        ("customer_id,email", True),
        ('"memberId"', True),
        ("CUSTOMER-ID", True),
        ("12345", False),
        ("identity", False),
        ("m1", False),
    ],
)
def test_what_counts_as_a_column_name(line: str, header: bool) -> None:
    assert looks_like_column_name(line) is header


def test_ids_from_stdin_after_the_arguments(server: ThreadedSandbox) -> None:
    for member, amount in (("a", "1.10"), ("b", "2.20"), ("c", "3.30")):
        server.call(server.sandbox.add_credits, member, [amount])

    result = invoke(
        ["--api-key", API_KEY, "--base-url", server.base_url, "credits", "export", "c",
         "--ids-file", "-", "--out", "-", "--format", "jsonl"],
        input="b\n\na\n",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert [(r["member_id"], r["amount"]) for r in jsonl(result.stdout)] == [
        ("c", Decimal("3.30")),
        ("b", Decimal("2.20")),
        ("a", Decimal("1.10")),
    ]


def test_an_ids_file_that_is_not_utf8_is_a_usage_error(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"1\n\xff\xfe2\n")

    result = api(server, "credits", "export", "--ids-file", str(ids), "--out", "-")

    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {ids} is not UTF-8 text")


def test_progress_bar_on_a_terminal(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inveterate_async.cli import _export

    monkeypatch.setattr(_export, "is_terminal", lambda stream: True)
    members = server.call(server.sandbox.seed_members, 30)
    ids = tmp_path / "ids.txt"
    ids.write_text("member\n" + "\n".join(members) + "\n", encoding="utf-8")
    out = tmp_path / "credits.ndjson"

    result = api(
        server, "credits", "export", "--ids-file", str(ids), "--skip-header", "--out", str(out)
    )

    assert result.exit_code == 0, result.stderr
    assert len(jsonl(out.read_text(encoding="utf-8"))) == 150
    assert "exported 150 credits of 30 members" in result.stderr


# --- --state: resuming in the same order --------------------------------------------


def interrupt_after_writes(monkeypatch: pytest.MonkeyPatch, writes: int) -> None:
    """Ctrl-C (a real SIGINT to this process) during the export's ``writes``-th write to the
    output: the command's handler cancels it at its next await."""
    real_write = _target.Sink.write
    done: list[int] = []

    def write(self: _target.Sink, data: bytes) -> None:
        done.append(1)
        if len(done) == writes:
            os.kill(os.getpid(), signal.SIGINT)
        real_write(self, data)

    monkeypatch.setattr(_target.Sink, "write", write)


def test_an_interrupted_export_resumes_with_the_same_command(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = seed_varied(server, 40)
    server.call(server.sandbox.fail_next, 500, customer_id="m2")  # recorded before the stop
    out, state = tmp_path / "all.csv", tmp_path / "all.state"
    args = ["credits", "export", *members, "--out", str(out), "--state", str(state),
            "--page-size", "3", "--concurrency", "5"]  # fmt: skip
    interrupt_after_writes(monkeypatch, 25)

    stopped = api(server, *args)

    assert stopped.exit_code == 130
    first, *rest = stopped.stderr.splitlines()
    partial = tmp_path / ".all.csv.partial"
    assert first.startswith("interrupted: ")
    assert first.endswith(f" are saved in {partial} ({out} is not written yet)")
    assert rest[-1].startswith("to resume, run the same command (add your --api-key, or set ")
    assert hinted_command(stopped.stderr, "to resume") == [
        "--base-url", server.base_url, "--max-retries", "0", *args[:-6],
        "--state", str(state), "--concurrency", "5", "--page-size", "3",
    ]  # fmt: skip
    assert not out.exists()
    assert partial.exists()
    monkeypatch.undo()

    resumed = api(server, *args)

    assert resumed.exit_code == 1  # m2 failed before the interruption
    assert "  m2: ServerError: HTTP 500" in resumed.stderr
    said = re.search(
        rf"^resumed from {re.escape(str(state))}: (\d+) credits? of (\d+) members? were saved "
        "by an earlier run$",
        resumed.stderr,
        re.M,
    )
    assert said is not None, resumed.stderr
    assert int(said[1]) > 0
    assert csv_rows(out) == expected_rows(server, [m for m in members if m != "m2"])
    assert sorted(os.listdir(tmp_path)) == ["all.csv"]  # state and partial files are gone


def test_interrupted_without_state_nothing_is_left(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = seed_varied(server, 20)
    out = tmp_path / "all.csv"
    out.write_text("yesterday\n", encoding="utf-8")
    interrupt_after_writes(monkeypatch, 5)

    result = api(server, "credits", "export", *members, "--out", str(out), "--force")

    assert result.exit_code == 130
    first, second = result.stderr.splitlines()
    assert first.startswith(f"interrupted: nothing was written to {out} (")
    assert second.startswith(
        "to be able to resume, give it a state file (add your --api-key, or set "
        "INVETERATE_API_KEY): inveterate "
    )
    assert second.endswith(f"--force --state {out}.state")
    assert out.read_text(encoding="utf-8") == "yesterday\n"
    assert os.listdir(tmp_path) == ["all.csv"]


def test_interrupted_to_stdout_says_it_is_incomplete(
    server: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = seed_varied(server, 20)
    interrupt_after_writes(monkeypatch, 4)

    result = api(server, "credits", "export", *members, "--out", "-")

    assert result.exit_code == 130
    assert result.stderr.startswith("interrupted: ")
    assert result.stderr.endswith(" were written to stdout (incomplete)\n")


def test_a_fan_out_stopped_mid_ledger_resumes_in_place(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    members = seed_varied(server, 40)
    issued: list[str] = []

    def rotate_the_key_after_some_pages(member: str, entry: Mapping[str, Any]) -> str:
        issued.append(entry["id"])
        if len(issued) == 30:
            server.sandbox.api_key = "rotated"  # every request from now on is refused
        return f"{member}:{entry['id']}"

    server.call(setattr, server.sandbox, "cursor_factory", rotate_the_key_after_some_pages)
    out, state = tmp_path / "all.csv", tmp_path / "all.state"
    args = ["credits", "export", *members, "--out", str(out), "--state", str(state),
            "--page-size", "2", "--concurrency", "4"]  # fmt: skip

    stopped = api(server, *args)

    assert stopped.exit_code == 1
    lines = stopped.stderr.splitlines()
    assert "because the API key was refused" in lines[0]
    assert "(all.csv is not written yet)" in lines[1] or f"({out} is not written yet)" in lines[1]
    assert lines[-1].startswith("to resume once that is fixed, run the same command (add your")
    assert not out.exists()
    server.call(setattr, server.sandbox, "api_key", API_KEY)

    resumed = api(server, *args)

    assert resumed.exit_code == 0, resumed.stderr
    assert csv_rows(out) == expected_rows(server, members)


def test_resuming_with_other_ids_is_refused_and_keeps_the_state(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = seed_varied(server, 30)
    out, state = tmp_path / "all.csv", tmp_path / "s.db"
    common = ["--out", str(out), "--state", str(state), "--page-size", "3"]
    interrupt_after_writes(monkeypatch, 20)
    assert api(server, "credits", "export", *members, *common).exit_code == 130
    monkeypatch.undo()

    shuffled = api(server, "credits", "export", *members[::-1], *common)
    fewer = api(server, "credits", "export", *members[:1], *common)

    for refused in (shuffled, fewer):
        assert refused.exit_code == 2
        assert refused.stderr.startswith(f"Error: cannot resume the export saved in {state}: ")
        assert refused.stderr.endswith(
            ": give the same ids in the same order, or delete that file to start over\n"
        )
    assert api(server, "credits", "export", *members, *common).exit_code == 0
    assert csv_rows(out) == expected_rows(server, members)


@pytest.mark.parametrize("change", ["format", "not a database", "locked", "partial gone"])
def test_a_state_file_that_cannot_be_used_is_a_usage_error(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    members = seed_varied(server, 10)
    out, state = tmp_path / "all.csv", tmp_path / "s.db"
    interrupt_after_writes(monkeypatch, 3)
    assert api(server, "credits", "export", *members, "--out", str(out), "--state",
               str(state)).exit_code == 130  # fmt: skip
    monkeypatch.undo()
    fmt, lock = "csv", None
    if change == "format":
        fmt = "jsonl"
    elif change == "not a database":
        state.write_bytes(b"not sqlite" * 100)
    elif change == "locked":  # as another export running on the same state file
        lock = sqlite3.connect(state, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
    else:
        (tmp_path / ".all.csv.partial").unlink()
    before = len(server.requests())
    try:
        result = api(server, "credits", "export", *members, "--out", str(out), "--state",
                     str(state), "--format", fmt)  # fmt: skip
    finally:
        if lock is not None:
            lock.close()

    assert result.exit_code == 2
    expected = {
        "format": "belongs to another export",
        "not a database": "is not a state file of `inveterate credits export`",
        "locked": "another export is using the state file",
        "partial gone": "is missing: delete the --state file to start over",
    }[change]
    assert expected in result.stderr
    assert len(server.requests()) == before


def test_a_finished_export_whose_file_was_not_moved_is_exported_again(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = seed_varied(server, 5)
    out, state = tmp_path / "all.csv", tmp_path / "s.db"

    def killed(self: _target.OutputTarget, stream: Any) -> None:
        raise KeyboardInterrupt  # between "complete" in the state file and the rename

    monkeypatch.setattr(_target.OutputTarget, "commit", killed)
    aborted = api(server, "credits", "export", *members, "--out", str(out), "--state", str(state))
    monkeypatch.undo()

    assert aborted.exit_code == 130  # stopped inside the export, as Ctrl-C there would
    saved = StateFile(str(state), identity_of(out, server))
    assert saved.complete
    saved.close()

    again = api(server, "credits", "export", *members, "--out", str(out), "--state", str(state))

    assert again.exit_code == 0, again.stderr
    assert csv_rows(out) == expected_rows(server, members)


def test_sigterm_in_the_same_process_is_handled_like_ctrl_c(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = seed_varied(server, 30)
    out, state = tmp_path / "all.csv", tmp_path / "s.db"
    args = ["credits", "export", *members, "--out", str(out), "--state", str(state),
            "--page-size", "3"]  # fmt: skip
    real_write = _target.Sink.write
    writes: list[int] = []

    def write(self: _target.Sink, data: bytes) -> None:
        writes.append(1)
        if len(writes) == 10:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the command's event loop
        real_write(self, data)

    monkeypatch.setattr(_target.Sink, "write", write)
    terminated = api(server, *args)
    monkeypatch.undo()

    assert terminated.exit_code == 143
    assert terminated.stderr.startswith("interrupted: ")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers are removed again
    resumed = api(server, *args)
    assert resumed.exit_code == 0, resumed.stderr
    assert csv_rows(out) == expected_rows(server, members)


def test_a_failed_head_loses_its_written_rows_even_after_a_checkpoint(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = seed_varied(server, 5)  # m5 has 9 credits: 3 pages
    fail_after_first_cursor(server, "m5")
    monkeypatch.setattr(_exporter, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after each event
    out, state = tmp_path / "all.csv", tmp_path / "s.db"

    result = api(
        server, "credits", "export", *members, "--out", str(out), "--state", str(state),
        "--page-size", "3", "--concurrency", "1",  # every member streams as the head
    )  # fmt: skip

    assert result.exit_code == 1
    assert "  m5: ServerError: HTTP 500" in result.stderr
    assert csv_rows(out) == expected_rows(server, members[:-1])


def test_only_a_window_of_members_is_read_ahead_of_a_long_ledger(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    server.call(server.sandbox.add_credits, "long", [f"{n}.00" for n in range(1, 61)])
    others = server.call(server.sandbox.seed_members, _exporter.MIN_WINDOW + 20)
    out = tmp_path / "all.csv"

    result = api(
        server, "credits", "export", "long", *others, "--out", str(out), "--page-size", "1",
        "--concurrency", "8",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert csv_rows(out) == expected_rows(server, ["long", *others])
    # While "long" was being read, its 60 pages one at a time, the other workers stopped
    # after the window: the last members were only asked for after "long" was done.
    gets = [r.customer_id for r in server.requests("GET")]
    last_long = len(gets) - 1 - gets[::-1].index("long")
    assert gets.index(others[-1]) > gets.index(others[_exporter.MIN_WINDOW - 2])
    assert set(gets[last_long:]) >= set(others[-10:])


@pytest.mark.parametrize("change", ["other head", "head missing"])
def test_a_resume_whose_next_id_changed_is_refused(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    server.call(server.sandbox.add_credits, "a", ["1.00"])
    server.call(server.sandbox.add_credits, "b", [f"{n}.00" for n in range(1, 10)])
    out, state = tmp_path / "all.csv", tmp_path / "s.db"
    common = ["--out", str(out), "--state", str(state), "--page-size", "2", "--concurrency", "1"]
    interrupt_after_writes(monkeypatch, 3)  # a, and b's first two pages
    assert api(server, "credits", "export", "a", "b", *common).exit_code == 130
    monkeypatch.undo()

    ids = ["a", "c"] if change == "other head" else ["a"]
    result = api(server, "credits", "export", *ids, *common)

    assert result.exit_code == 2
    reason = "id 2 is no longer 'b'" if change == "other head" else "'b' is missing from the ids"
    assert f"saved in {state}: {reason}: give the same ids" in result.stderr
    assert api(server, "credits", "export", "a", "b", *common).exit_code == 0
    assert csv_rows(out) == expected_rows(server, ["a", "b"])


def test_an_export_never_finishes_with_a_member_it_did_not_hear_the_end_of(
    tmp_path: Path,
) -> None:
    class SilentStream:
        """A fan-out that delivers a page but never says the member finished."""

        def __init__(self, members: AsyncIterator[Any]) -> None:
            self.members = members

        async def __aenter__(self) -> SilentStream:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def events(self) -> AsyncIterator[object]:
            async for member_id, _ in self.members:
                yield LedgerPage(member_id, CreditPage((), "next"))

    class Client:
        def iter_credits_many(self, members: AsyncIterator[Any], **options: Any) -> SilentStream:
            return SilentStream(members)

    async def ids() -> AsyncIterator[str]:
        yield "a"

    target = _target.OutputTarget(str(tmp_path / "x.csv"))
    stream = target.open_new(b"")
    exporter = _exporter.OrderedExport(
        _target.Sink(stream, name="x.csv", seekable=True),
        lambda member_id, credits: "",
        start=Checkpoint(),
        report=Tally(),
    )
    run = exporter.run(Client(), ids(), concurrency=1, page_size=None, abort_after=None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="lost track of 1 members"):
        asyncio.run(run)
    stream.close()
