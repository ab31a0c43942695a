"""``inveterate credits apply`` and ``credits journal``: batch files, confirmation, outcomes
and exit codes, with CliRunner against a threaded Sandbox."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from inveterate_async import CreditAdjustment, InveterateClient
from inveterate_async.cli import _apply
from inveterate_async.cli._batchfile import BatchFile, BatchFileError

from .cli_support import API_KEY, ThreadedSandbox, api, invoke

HEADER = "ref,member_id,amount,note,force\n"


@pytest.fixture(name="server")
def threaded_sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


def cli(server: ThreadedSandbox, tmp_path: Path, *args: str, answers: str) -> Any:
    """``credits apply`` of the test batch with ``answers`` typed at the prompts."""
    options = ["--journal", str(tmp_path / "j.sqlite")]
    command = ["credits", "apply", str(tmp_path / "batch.csv"), *options, *args]
    base = ["--api-key", API_KEY, "--base-url", server.base_url, "--max-retries", "0"]
    return invoke([*base, *command], input=answers)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def states(journal: Path) -> dict[str, str]:
    connection = sqlite3.connect(journal)
    try:
        return dict(connection.execute("SELECT ref, state FROM adjustments ORDER BY position"))
    finally:
        connection.close()


def problems(path: str) -> list[str]:
    with pytest.raises(BatchFileError) as info:
        read_batch(path)
    return info.value.problems


# --- batch files --------------------------------------------------------------------------


def read_batch(path: str | Path) -> list[CreditAdjustment]:
    """Every adjustment of a batch file, read as ``credits apply`` reads it."""
    return list(BatchFile(str(path)))


def test_csv_rows_become_exact_adjustments(tmp_path: Path) -> None:
    text = (
        "\ufeff"  # a BOM, as spreadsheets write
        + HEADER
        + "g:1,42,5.00,Gold bonus,\n"
        + '"g:2",7,-2.50,"Claw back, with ""quotes""\nand a line break",TRUE\n'
        + "\n"
        + "g:3,8,10,,no\n"
    )
    batch = read_batch(write(tmp_path, "batch.txt", text))
    assert [(a.ref, a.customer_id, str(a.amount), a.note, a.force) for a in batch] == [
        ("g:1", "42", "5.00", "Gold bonus", None),
        ("g:2", "7", "-2.50", 'Claw back, with "quotes"\nand a line break', True),
        ("g:3", "8", "10", None, False),
    ]


def test_jsonl_rows_keep_the_digits_of_numbers(tmp_path: Path) -> None:
    lines = [
        {"ref": "g:1", "member_id": "42", "amount": "5.00", "note": "Gold\u2028bonus"},
        {"ref": "g:2", "member_id": 7, "amount": -2.5, "force": True},
    ]
    text = "\n".join(json.dumps(line) for line in lines).replace("-2.5", "-2.50") + "\n\n"
    batch = read_batch(write(tmp_path, "batch.jsonl", text))
    assert [(a.ref, a.customer_id, str(a.amount), a.note, a.force) for a in batch] == [
        ("g:1", "42", "5.00", "Gold\u2028bonus", None),
        ("g:2", "7", "-2.50", None, True),
    ]
    sniffed = read_batch(write(tmp_path, "batch.data", text))  # no extension: sniffed
    assert sniffed == batch


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("1e3", "plain decimal"),
        ("+5", "plain decimal"),
        ("5.", "plain decimal"),
        (".5", "plain decimal"),
        ("1,000.00", "plain decimal"),
        ("\u0665", "plain decimal"),  # an Arabic-Indic digit five
        (" 5", "spaces around it"),
        ("NaN", "plain decimal"),
        ("0.00", "is zero: nothing to add or remove"),
        ("", "amount is missing"),
    ],
)
def test_amounts_must_be_plain_decimals(tmp_path: Path, amount: str, reason: str) -> None:
    path = write(tmp_path, "b.csv", f'{HEADER}g:1,42,5.00,,\ng:2,42,"{amount}",,\n')
    (problem,) = problems(path)
    assert problem.startswith("line 3: ")
    assert reason in problem


def test_every_bad_line_is_listed_with_its_number(tmp_path: Path) -> None:
    text = HEADER + (
        "g:1,42,5.00,,\n"
        "g:2,43,5.00,,\n"
        ",42,1.00,,\n"
        "g:3,,1.00,,\n"
        "g:4, 42,1.00,,\n"
        "g:5,42,1.00,,maybe\n"
        "g:6,42,1.00,,,extra\n"
        '"g:7",42,"1.00","a\nb",\n'
        "g:8,42,2,,\n"
    )
    assert problems(write(tmp_path, "b.csv", text)) == [
        "line 4: ref is missing",
        "line 5: member_id is missing",
        "line 6: member_id has spaces around it: ' 42'",
        "line 7: force must be true, false or empty, not 'maybe'",
        "line 8: 6 fields, but the header has 5 columns",
    ]


def test_jsonl_problems_have_line_numbers(tmp_path: Path) -> None:
    text = "\n".join(
        [
            '{"ref": "a", "member_id": "1", "amount": "1"}',
            "not json",
            "[1, 2]",
            '{"ref": "b", "member_id": 1.5, "amount": "1"}',
            '{"ref": "c", "member_id": "1", "amount": NaN}',
            '{"ref": "d", "member_id": "1", "amount": "1", "note": 5}',
            '{"ref": "e", "member_id": "1", "amount": "1", "force": 1}',
            '{"ref": "f", "member": "1", "amount": "1"}',
            '{"ref": "g", "member_id": "1", "amount": "1", "force": "yes"}',
            '{"ref": " h", "member_id": 1.5, "amount": "0", "note": 5, "force": "no"}',
        ]
    )
    found = problems(write(tmp_path, "b.jsonl", text))
    assert [p.split(":")[0] for p in found] == [f"line {n}" for n in range(2, 11)]
    assert "not valid JSON" in found[0]
    assert found[1] == "line 3: not a JSON object"
    assert found[2] == "line 4: member_id must be text or a whole number, not 1.5"
    assert "NaN is not a number" in found[3]
    assert found[4] == "line 6: note must be text, not '5'"
    assert found[5] == "line 7: force must be true, false or null, not 1"
    assert "unknown column(s) 'member'; missing column(s) member_id" in found[6]
    # JSON has its own booleans: the CSV words are not taken.
    assert found[7] == 'line 9: force must be true, false or null, not "yes"'
    # Every problem of a line, in column order.
    assert found[8].startswith("line 10: ref has spaces around it: ' h'; member_id must be ")
    assert found[8].count(";") == 4
    assert found[8].endswith(
        "; note must be text, not '5'; force must be true, false or null, not \"no\""
    )


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("ref,member,amount\n", "unknown column(s) 'member'; missing column(s) member_id"),
        ("ref,amount\n", "missing column(s) member_id"),
    ],
)
def test_csv_headers_are_checked(tmp_path: Path, header: str, message: str) -> None:
    (problem,) = problems(write(tmp_path, "b.csv", header + "a,1\n"))
    assert problem.startswith(f"line 1: {message}")
    assert "(columns are: ref, member_id, amount, note, force)" in problem


def test_unreadable_files(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(HEADER.encode() + "g:1,42,5.00,Café,\n".encode("latin-1"))
    assert problems(str(latin1))[0].startswith("the file is not UTF-8")
    quoting = write(tmp_path, "quoting.csv", HEADER + 'g:0,42,1,,\ng:1,42,"5.00"x,,\n')
    assert problems(quoting) == ["line 3: not valid CSV (',' expected after '\"')"]
    assert read_batch(write(tmp_path, "empty.csv", "")) == []


def test_many_problems_are_cut_short(tmp_path: Path) -> None:
    text = HEADER + "".join(f"g:{n},42,1e{n},,\n" for n in range(25))
    with pytest.raises(BatchFileError) as info:
        read_batch(write(tmp_path, "b.csv", text))
    assert len(info.value.problems) == 25
    assert str(info.value).endswith("\n  ... and 5 more")
    assert str(info.value).startswith(f"{tmp_path / 'b.csv'}: 25 problem(s), nothing was sent:")


# --- credits apply ------------------------------------------------------------------------


def apply(server: ThreadedSandbox, tmp_path: Path, *args: str, text: str | None = None) -> Any:
    batch = write(tmp_path, "batch.csv", text or HEADER + "g:1,1,5.00,Gold,\ng:2,2,-2.50,,\n")
    return api(server, "credits", "apply", batch, "--journal", str(tmp_path / "j.sqlite"), *args)


def ledger_amounts(server: ThreadedSandbox, *members: str) -> list[Decimal]:
    return [e["amount"] for m in members for e in server.call(server.sandbox.ledger, m)]


def test_apply_sends_each_row_and_prints_a_summary(server: ThreadedSandbox, tmp_path: Path) -> None:
    result = apply(server, tmp_path, "--yes")
    assert result.exit_code == 0, result.stderr
    assert [line.split() for line in result.stdout.splitlines()] == [
        ["state", "rows", "amount"],
        ["applied", "2", "2.50"],
        ["total", "2", "2.50"],
    ]
    assert ledger_amounts(server, "1", "2") == [Decimal("5.00"), Decimal("-2.50")]
    notes = [e["note"] for m in "12" for e in server.call(server.sandbox.ledger, m)]
    assert notes == ["Gold [ref:g:1]", "[ref:g:2]"]
    again = apply(server, tmp_path, "--yes")
    assert again.exit_code == 0
    assert again.stdout == result.stdout
    assert len(server.requests("POST")) == 2


def test_a_ref_given_twice_is_a_usage_error_and_sends_nothing(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    text = HEADER + "g:1,1,5.00,,\ng:2,2,1.00,,\ng:1,3,5.00,,\n"
    result = apply(server, tmp_path, "--yes", text=text)
    assert result.exit_code == 2
    assert "ref 'g:1' is given twice" in result.stderr
    assert server.requests("POST") == []
    shown = invoke(["credits", "journal", str(tmp_path / "j.sqlite")])
    assert "total" in shown.stdout
    assert " 0 " in shown.stdout


def test_apply_asks_first_and_refuses_without_a_terminal(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = apply(server, tmp_path)
    assert refused.exit_code == 2
    assert "stdin is not a terminal; pass --yes" in refused.stderr
    monkeypatch.setattr(_apply, "is_terminal", lambda stream: stream is sys.stdin)
    cancelled = cli(server, tmp_path, answers="n\n")
    assert cancelled.exit_code == 1
    assert "Send them? [y/N]" in cancelled.stderr
    assert "cancelled: nothing was sent" in cancelled.stderr
    assert server.requests("POST") == []
    accepted = cli(server, tmp_path, answers="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert len(server.requests("POST")) == 2


def test_dry_run_prints_what_would_be_sent(server: ThreadedSandbox, tmp_path: Path) -> None:
    result = apply(server, tmp_path, "--dry-run", "--tag-notes")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "g:1\t1\t5.00\tGold [ref:g:1]",
        "g:2\t2\t-2.50\t[ref:g:2]",
    ]
    assert "dry run: nothing was sent or written" in result.stderr
    assert not (tmp_path / "j.sqlite").exists()
    assert server.requests() == []


def test_rejected_rows_exit_1_and_are_listed(server: ThreadedSandbox, tmp_path: Path) -> None:
    server.call(server.sandbox.fail_next, 400, method="POST", customer_id="2")
    result = apply(server, tmp_path, "--yes")
    assert result.exit_code == 1
    assert "1 row to look at:" in result.stdout
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("g:2")]
    assert line.split()[:4] == ["g:2", "2", "-2.50", "rejected"]
    assert "BadRequestError: HTTP 400" in result.stdout


def test_unconfirmed_rows_exit_3_and_can_be_resent_when_asked(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.call(server.sandbox.fail_next, 500, method="POST", customer_id="2")
    result = apply(server, tmp_path, "--yes", "--settle", "0")
    assert result.exit_code == 3
    assert "not_applied" in result.stdout
    assert "--resend-unconfirmed sends it again" in result.stdout
    # On a terminal, the CLI asks whether to send them again.
    monkeypatch.setattr(_apply, "is_terminal", lambda stream: stream is sys.stdin)
    asked = cli(server, tmp_path, "--settle", "0", "--yes", answers="n\n")
    assert "1 adjustment not in the ledger 0 s after being sent" in asked.stderr
    assert "Send them again? [y/N]" in asked.stderr
    assert asked.exit_code == 3
    assert len(server.requests("POST")) == 2
    resent = cli(server, tmp_path, "--settle", "0", "--yes", answers="y\n")
    assert resent.exit_code == 0, resent.stderr
    assert ledger_amounts(server, "1", "2") == [Decimal("5.00"), Decimal("-2.50")]


def test_an_edit_of_an_applied_row_is_a_usage_error(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    assert apply(server, tmp_path, "--yes").exit_code == 0
    edited = apply(server, tmp_path, "--yes", text=HEADER + "g:1,1,6.00,Gold,\n")
    assert edited.exit_code == 2
    assert "1 ref(s) already in" in edited.stderr
    assert "g:1 (applied: amount '5.00' -> '6.00')" in edited.stderr


def test_a_bad_file_is_a_usage_error_and_sends_nothing(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    result = apply(server, tmp_path, "--yes", text=HEADER + "g:1,1,1e2,,\n")
    assert result.exit_code == 2
    assert "line 2: '1e2' is not a plain decimal such as 10.00 or -2.50" in result.stderr
    assert server.requests() == []


def test_progress_bar_on_a_terminal(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_apply, "is_terminal", lambda stream: stream is sys.stderr)
    result = apply(server, tmp_path, "--yes")
    assert result.exit_code == 0
    assert "applying" in result.stderr
    assert "applied 2 · rejected 0" in result.stderr


def test_needs_review_lists_the_candidates(server: ThreadedSandbox, tmp_path: Path) -> None:
    # A look-alike made a moment ago by someone else, then our write: applied, but a 500.
    now = datetime.now(timezone.utc).isoformat()
    look_alike = {"amount": "5.00", "note": "Gold", "createdAt": now}
    server.call(server.sandbox.add_credits, "1", [look_alike])
    server.call(server.sandbox.fail_next, 500, method="POST", customer_id="1", apply=True)
    result = apply(
        server, tmp_path, "--yes", "--no-tag-notes", "--settle", "0", "--resend-unconfirmed"
    )
    assert result.exit_code == 3
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("g:1")]
    assert line.split()[:4] == ["g:1", "1", "5.00", "needs_review"]
    assert "2 look-alike ledger entries: cr_" in line
    assert len(server.requests("POST")) == 2  # never re-sent


def test_journal_command_shows_the_state(server: ThreadedSandbox, tmp_path: Path) -> None:
    server.call(server.sandbox.fail_next, 400, method="POST", customer_id="2")
    apply(server, tmp_path, "--yes")
    shown = invoke(["credits", "journal", str(tmp_path / "j.sqlite")])
    assert shown.exit_code == 1
    assert [line.split() for line in shown.stdout.splitlines()[:4]] == [
        ["state", "rows", "amount"],
        ["applied", "1", "5.00"],
        ["rejected", "1", "-2.50"],
        ["total", "2", "2.50"],
    ]
    assert "1 row to look at:" in shown.stdout
    limited = invoke(["credits", "journal", str(tmp_path / "j.sqlite"), "--limit", "0"])
    assert limited.stdout == shown.stdout
    missing = invoke(["credits", "journal", str(tmp_path / "nope.sqlite")])
    assert missing.exit_code == 2
    assert "no journal at" in missing.stderr


def test_rows_never_sent_and_rows_dropped_from_the_file_are_shown(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    # A wrong key fails the first read: the rows are in the journal, never sent.
    batch = write(tmp_path, "batch.csv", HEADER + "g:1,1,5.00,,\ng:2,2,1.00,,\n")
    journal = str(tmp_path / "j.sqlite")
    wrong = ["--api-key", "wrong", "--base-url", server.base_url, "--max-retries", "0"]
    failed = invoke([*wrong, "credits", "apply", batch, "--journal", journal, "--yes"])
    assert failed.exit_code == 4  # the key was refused: rows left pending
    assert "BadRequestError: HTTP 400" in failed.stderr
    assert "the API refused the key, so the run stopped" in failed.stderr
    shown = invoke(["credits", "journal", journal])
    assert shown.exit_code == 1
    assert [line.split()[3:] for line in shown.stdout.splitlines() if line.startswith("g:")] == [
        ["pending", "not", "sent"],
        ["pending", "not", "sent"],
    ]
    smaller = apply(server, tmp_path, "--dry-run", text=HEADER + "g:1,1,5.00,,\n")
    assert "to send: 1 adjustment, net +5.00" in smaller.stderr
    right = apply(server, tmp_path, "--yes", text=HEADER + "g:1,1,5.00,,\ng:2,2,1.00,,\n")
    assert right.exit_code == 0  # the right key finishes the batch
    assert len(server.requests("POST")) == 2


def test_journal_command_cuts_long_lists(tmp_path: Path, server: ThreadedSandbox) -> None:
    rows = "".join(f"g:{n},{n},1.00,,\n" for n in range(5))
    server.call(server.sandbox.fail_next, 400, method="POST", times=5)
    apply(server, tmp_path, "--yes", text=HEADER + rows)
    shown = invoke(["credits", "journal", str(tmp_path / "j.sqlite"), "--limit", "2"])
    text = " ".join(shown.stdout.split())
    assert f"... and 3 more (inveterate credits journal {tmp_path / 'j.sqlite'} --limit 0)" in text
    assert states(tmp_path / "j.sqlite") == {f"g:{n}": "rejected" for n in range(5)}


def test_apply_interrupted_says_how_to_resume(
    server: ThreadedSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []
    real = InveterateClient.apply_credits

    async def interrupted(self: InveterateClient, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("dry_run"):
            calls.append(True)
            raise KeyboardInterrupt
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(InveterateClient, "apply_credits", interrupted)
    result = apply(server, tmp_path, "--yes")
    assert calls == [True]
    assert result.exit_code == 130
    assert result.stderr.splitlines()[-1].startswith(
        f"interrupted: the journal {tmp_path / 'j.sqlite'} is consistent; run the same command"
    )


def test_apply_needs_a_key() -> None:
    result = invoke(["credits", "apply", __file__, "--journal", "j.sqlite", "--yes"])
    assert result.exit_code == 2
    assert "no API key" in result.stderr
