"""The ``inveterate`` command, run with CliRunner against a real Sandbox.

The CLI runs its own event loop (asyncio.run), so the Sandbox serves from a background
thread with its own loop; the test thread changes the sandbox's state through that loop
(``server.call``) while no command is running.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import queue
import runpy
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from inveterate_async import InveterateClient
from inveterate_async.cli import _credits, _output, _serve, _terminal, serve_sandbox
from inveterate_async.testing import Sandbox

from .cli_support import (
    API_KEY,
    CSV_HEADER,
    JSONL_KEYS,
    ThreadedSandbox,
    api,
    cursor_from,
    fail_after_first_cursor,
    invoke,
    jsonl,
)


@pytest.fixture
def server() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


# --- credits list -------------------------------------------------------------------


def test_list_jsonl_when_piped_keeps_exact_amounts(server: ThreadedSandbox) -> None:
    server.call(server.sandbox.add_credits, "42", ["10.10", "-2.50", "0.1"])

    result = api(server, "credits", "list", "42")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert '"amount":10.10,"new_balance":10.10,' in lines[0]
    assert '"amount":-2.50,"new_balance":7.60,' in lines[1]
    assert '"amount":0.1,"new_balance":7.70,' in lines[2]
    rows = jsonl(result.stdout)
    assert [list(row) for row in rows] == [JSONL_KEYS] * 3
    assert [row["amount"] for row in rows] == [Decimal("10.10"), Decimal("-2.50"), Decimal("0.1")]
    assert rows[0]["created_at"] == "2024-03-01T12:00:00Z"
    assert rows[0]["reason"] == "manual adjustment"
    assert rows[0]["note"] is None
    assert [row["id"] for row in rows] == server.ledger_ids("42")


def test_list_and_export_can_write_amounts_as_strings(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    server.call(server.sandbox.add_credits, "42", ["99999999999999999999.99"])
    listed = api(server, "credits", "list", "42", "--amounts-as-strings")
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout)["amount"] == "99999999999999999999.99"
    out = tmp_path / "all.jsonl"
    exported = api(server, "credits", "export", "42", "--out", str(out), "--amounts-as-strings")
    assert exported.exit_code == 0, exported.stderr
    assert json.loads(out.read_text())["new_balance"] == "99999999999999999999.99"
    for words in (["list", "42", "--format", "csv"], ["export", "42", "--out", "x.csv"]):
        refused = api(server, "credits", *words, "--amounts-as-strings")
        assert refused.exit_code == 2
        assert "--amounts-as-strings is for JSON Lines" in refused.stderr


def test_list_of_an_empty_ledger_says_so_on_stderr(server: ThreadedSandbox) -> None:
    result = api(server, "credits", "list", "99999")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == "no credits for member 99999"
    server.call(server.sandbox.add_credits, "42", ["1"])
    assert "no credits" not in api(server, "credits", "list", "42").stderr


def test_list_csv_cells_are_exact(server: ThreadedSandbox) -> None:
    server.call(
        server.sandbox.add_credits,
        "42",
        ["10.10", {"amount": "-2.50", "note": 'a, "quoted" note'}, "0.1"],
    )

    result = api(server, "credits", "list", "42", "--format", "csv")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["amount"] for r in rows] == ["10.10", "-2.50", "0.1"]
    assert [r["new_balance"] for r in rows] == ["10.10", "7.60", "7.70"]
    assert rows[1]["note"] == 'a, "quoted" note'
    assert rows[0]["note"] == ""


def test_list_table_on_a_terminal(server: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # The lambda reads sys.stdout when called: the stream CliRunner puts in place.
    monkeypatch.setattr(_credits, "is_terminal", lambda stream: stream is sys.stdout)
    server.call(server.sandbox.add_credits, "42", ["10.10", "-2.50", "0.1"])

    result = api(server, "credits", "list", "42", "--page-size", "2")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    # One header, although there were two pages; at 80 columns "id" makes room for notes.
    assert lines[0].split() == JSONL_KEYS[:-1]
    assert [line.split()[1] for line in lines[1:]] == ["10.10", "-2.50", "0.1"]
    assert lines[1].startswith("2024-03-01T12:00:00Z")
    assert not result.stdout.lstrip().startswith("{")


def test_list_progress_on_a_terminal_stderr(
    server: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_credits, "is_terminal", lambda stream: stream is sys.stderr)
    server.call(server.sandbox.add_credits, "42", ["1.00"] * 5)

    result = api(server, "credits", "list", "42", "--page-size", "2", "--format", "jsonl")

    assert result.exit_code == 0, result.stderr
    assert len(jsonl(result.stdout)) == 5


def test_max_items_stops_and_reads_no_further(server: ThreadedSandbox) -> None:
    server.call(server.sandbox.add_credits, "7", [str(n) for n in range(1, 8)])

    result = api(server, "credits", "list", "7", "--page-size", "3", "--max-items", "5")

    assert result.exit_code == 0, result.stderr
    assert [row["amount"] for row in jsonl(result.stdout)] == [Decimal(n) for n in range(1, 6)]
    assert len(server.requests("GET")) == 2
    assert "--cursor" not in result.stderr  # stopped inside a page: no exact cursor


def test_max_items_at_a_page_end_prints_where_to_continue(server: ThreadedSandbox) -> None:
    server.call(server.sandbox.add_credits, "7", [str(n) for n in range(1, 8)])

    first = api(server, "credits", "list", "7", "--page-size", "3", "--max-items", "3")
    rest = api(server, "credits", "list", "7", "--cursor", cursor_from(first.stderr))

    assert first.exit_code == 0
    assert "stopped after 3 credits" in first.stderr
    assert [row["amount"] for row in jsonl(first.stdout)] == [Decimal(n) for n in (1, 2, 3)]
    assert [row["amount"] for row in jsonl(rest.stdout)] == [Decimal(n) for n in (4, 5, 6, 7)]


def test_failure_mid_way_prints_the_cursor_that_resumes_exactly(server: ThreadedSandbox) -> None:
    server.call(server.sandbox.add_credits, "42", [f"{n}.01" for n in range(1, 8)])
    fail_after_first_cursor(server, "42")

    failed = api(server, "credits", "list", "42", "--page-size", "3")

    assert failed.exit_code == 1
    assert "Error: ServerError: HTTP 500" in failed.stderr
    assert "3 credits printed" in failed.stderr
    printed = [row["id"] for row in jsonl(failed.stdout)]
    cursor = cursor_from(failed.stderr)

    resumed = api(server, "credits", "list", "42", "--page-size", "3", "--cursor", cursor)

    assert resumed.exit_code == 0, resumed.stderr
    rest = [row["id"] for row in jsonl(resumed.stdout)]
    assert printed == server.ledger_ids("42")[:3]
    assert printed + rest == server.ledger_ids("42")


def test_failure_before_anything_was_printed_is_just_the_error(server: ThreadedSandbox) -> None:
    server.call(server.sandbox.fail_next, 503)

    result = api(server, "credits", "list", "42")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ServerError: HTTP 503 from GET http://127.0.0.1:")
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, asyncio.CancelledError])
def test_interrupt_prints_the_cursor_and_exits_130(
    server: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch, interruption: type[BaseException]
) -> None:
    server.call(server.sandbox.add_credits, "42", [f"{n}.00" for n in range(1, 8)])
    real_write_rows = _output.JsonLinesWriter.write_rows
    calls: list[int] = []

    def write_rows(self: _output.JsonLinesWriter, rows: Sequence[Any]) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise interruption
        real_write_rows(self, rows)

    monkeypatch.setattr(_output.JsonLinesWriter, "write_rows", write_rows)

    result = api(server, "credits", "list", "42", "--page-size", "3")

    assert result.exit_code == 130
    assert result.stderr.startswith("interrupted")
    assert len(jsonl(result.stdout)) == 3
    monkeypatch.setattr(_output.JsonLinesWriter, "write_rows", real_write_rows)
    resumed = api(server, "credits", "list", "42", "--cursor", cursor_from(result.stderr))
    assert [row["amount"] for row in jsonl(resumed.stdout)] == [
        Decimal(f"{n}.00") for n in range(4, 8)
    ]


# --- credits add --------------------------------------------------------------------


def test_add_with_yes_sends_the_exact_amount(server: ThreadedSandbox) -> None:
    result = api(server, "credits", "add", "42", "10.00", "--note", "Refund #1", "--yes")

    assert result.exit_code == 0, result.stderr
    assert result.stderr == "Credit created\n"
    (row,) = jsonl(result.stdout)
    assert list(row) == JSONL_KEYS  # the SDK's names, not the API's camelCase
    assert row["amount"] == Decimal("10.00")
    assert row["new_balance"] == Decimal("10.00")
    assert row["note"] == "Refund #1"
    assert '"amount":10.00,' in result.stdout
    (post,) = server.requests("POST")
    assert post.body == b'{"amount":10.00,"note":"Refund #1"}'
    assert server.call(server.sandbox.balance, "42") == Decimal("10.00")


def test_add_negative_amount_with_force(server: ThreadedSandbox) -> None:
    server.call(server.sandbox.add_credits, "42", ["5.00"])

    result = api(server, "credits", "add", "42", "-2.50", "--force", "-y")

    assert result.exit_code == 0, result.stderr
    (post,) = server.requests("POST")
    assert post.body == b'{"amount":-2.50,"force":true}'


def test_add_refuses_without_yes_when_stdin_is_not_a_terminal(server: ThreadedSandbox) -> None:
    result = api(server, "credits", "add", "42", "10.00")

    assert result.exit_code == 2
    assert "pass --yes" in result.stderr
    assert server.requests() == []


@pytest.mark.parametrize(
    ("amount", "answer", "prompt", "exit_code"),
    [
        ("10.00", "y", "Add 10.00 credit to member 42? [y/N]", 0),
        ("10.00", "n", "Add 10.00 credit to member 42? [y/N]", 1),
        ("-2.50", "", "Remove 2.50 credit from member 42? [y/N]", 1),
    ],
)
def test_add_asks_on_a_terminal(
    server: ThreadedSandbox,
    monkeypatch: pytest.MonkeyPatch,
    amount: str,
    answer: str,
    prompt: str,
    exit_code: int,
) -> None:
    monkeypatch.setattr(_credits, "is_terminal", lambda stream: stream is sys.stdin)

    result = invoke(
        ["--api-key", API_KEY, "--base-url", server.base_url, "credits", "add", "42", amount],
        input=answer + "\n",
    )

    assert result.exit_code == exit_code, result.stderr
    assert prompt in result.stdout
    assert len(server.requests("POST")) == (1 if exit_code == 0 else 0)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"status": 500}, "ServerError: HTTP 500"),
        ({"status": 500, "apply": True}, "ServerError: HTTP 500"),
        ({"status": 500, "disconnect": True}, "APIConnectionError"),
    ],
)
def test_add_of_unknown_outcome_warns_and_exits_3(
    server: ThreadedSandbox, fault: dict[str, Any], error: str
) -> None:
    server.call(server.sandbox.fail_next, method="POST", **fault)

    result = api(server, "credits", "add", "42", "10.00", "--yes")

    assert result.exit_code == 3
    assert (
        "Warning: the credit may have been applied: check the ledger before retrying"
        in result.stderr
    )
    assert f"Error: {error}" in result.stderr
    assert result.stdout == ""
    assert len(server.requests("POST")) == 1


def test_add_rejected_by_the_api_exits_1(server: ThreadedSandbox) -> None:
    result = invoke(
        ["--api-key", "wrong", "--base-url", server.base_url, "credits", "add", "42", "1", "-y"]
    )

    assert result.exit_code == 1
    assert "BadRequestError: HTTP 400" in result.stderr
    assert "Invalid API key" in result.stderr
    assert "nothing was applied" in result.stderr


@pytest.mark.parametrize(
    "amount",
    [
        "0",
        "-0.00",
        "ten",
        "1e",
        "1e3",
        "1E3",
        "+5",
        "5.",
        ".5",
        "-.5",
        "--5",
        "\uff15",  # a full-width 5
        "\u0665",  # an Arabic-Indic 5
        " 5",
        "5 ",
        "5\n",
        "1,000",
        "1_000",
        "NaN",
        "Infinity",
        "0x10",
        "",
    ],
)
def test_add_bad_amount_is_a_usage_error_and_sends_nothing(
    server: ThreadedSandbox, amount: str
) -> None:
    result = api(server, "credits", "add", "42", amount, "--yes")

    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: invalid AMOUNT: {amount!r} is ")
    assert len(result.stderr.splitlines()) == 1
    assert server.requests() == []


# --- global options and usage ---------------------------------------------------------


def test_missing_key_says_how_to_fix_it() -> None:
    result = invoke(["credits", "list", "1"])

    assert result.exit_code == 2
    assert result.stderr == (
        "Error: no API key: pass --api-key, set INVETERATE_API_KEY, or use --sandbox to "
        "try the embedded sandbox\n"
    )


def test_key_and_base_url_from_the_environment(server: ThreadedSandbox) -> None:
    server.call(server.sandbox.add_credits, "9", ["9.90"])

    result = invoke(
        ["credits", "list", "9"],
        env={"INVETERATE_API_KEY": API_KEY, "INVETERATE_BASE_URL": server.base_url},
    )

    assert result.exit_code == 0, result.stderr
    assert '"amount":9.90' in result.stdout
    (get,) = server.requests()
    assert get.headers["X-Inveterate-Api-Key"] == API_KEY


def test_invalid_base_url_is_a_usage_error() -> None:
    result = invoke(
        ["--api-key", API_KEY, "--base-url", "http://example.com", "credits", "list", "1"]
    )

    assert result.exit_code == 2
    assert "base_url must use https" in result.stderr


def test_bad_option_value_is_a_usage_error() -> None:
    result = invoke(["--sandbox", "credits", "list", "1", "--format", "xml"])

    assert result.exit_code == 2


def test_sandbox_mode_needs_no_key() -> None:
    listed = invoke(["--sandbox", "credits", "list", "3", "--format", "csv"])
    exported = invoke(
        [
            "--sandbox",
            "--sandbox-members",
            "4",
            "credits",
            "export",
            "1",
            "2",
            "3",
            "4",
            "--out",
            "-",
        ]
    )
    added = invoke(["--sandbox", "credits", "add", "3", "1.25", "--yes"])

    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.splitlines()[0] == CSV_HEADER
    assert len(listed.stdout.splitlines()) == 6
    assert exported.exit_code == 0, exported.stderr
    assert {row["member_id"] for row in csv.DictReader(io.StringIO(exported.stdout))} == {
        "1",
        "2",
        "3",
        "4",
    }
    assert added.exit_code == 0, added.stderr
    assert '"amount":1.25,' in added.stdout


# --- demo and sandbox -----------------------------------------------------------------


def test_demo_runs_its_sections() -> None:
    result = invoke(["demo"])

    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for heading in (
        "1. List one member's ledger",
        "2. Export 200 members with fan-out",
        "3. Add a credit",
        "4. Errors you will see",
    ):
        assert heading in out
    assert "rows:    1007 credits of 200 members, 0 failed" in out
    assert "ValueError: amount is not a decimal number: 'ten'" in out
    assert "ValueError: amount must not be zero" in out
    assert "ServerError: HTTP 500 from POST" in out
    assert "outcome_unknown=True" in out
    assert "39.72 -> 49.72" in out


def test_serve_sandbox_answers_until_stopped() -> None:
    ready = threading.Event()
    seen: list[Sandbox] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def on_ready(sandbox: Sandbox) -> None:
        seen.append(sandbox)
        ready.set()

    def serve() -> None:
        loop.run_until_complete(
            serve_sandbox(stop=stop, port=0, members=3, api_key="k", ready=on_ready)
        )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert ready.wait(timeout=10)
        url = f"{seen[0].base_url}/admin/members/2/credits?limit=2"
        request = urllib.request.Request(url, headers={"X-Inveterate-Api-Key": "k"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read(), parse_float=Decimal)
        assert response.status == 200
        assert len(body["data"]["credits"]) == 2
        assert body["data"]["lastCreditEntry"] is not None
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
    assert not thread.is_alive()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_sandbox_command_serves_and_stops_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVETERATE_")}
    command = [sys.executable, "-m", "inveterate_async.cli", "sandbox", "--port", "0"]
    with subprocess.Popen(
        [*command, "--members", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        # A thread reads stdout so that waiting for the banner can time out.
        lines: queue.Queue[str] = queue.Queue()

        def read_lines() -> None:
            for line in proc.stdout or ():
                lines.put(line)

        reader = threading.Thread(target=read_lines)
        reader.start()
        try:
            banner = [lines.get(timeout=20) for _ in range(5)]
            assert banner[0].startswith("Inveterate sandbox: 3 members")
            base_url = banner[1].split("base URL:")[1].strip()
            assert base_url.startswith("http://127.0.0.1:")
            key = banner[2].split("API key:")[1].strip()
            assert "curl -s -H" in banner[3]
            request = urllib.request.Request(
                f"{base_url}/admin/members/1/credits", headers={"X-Inveterate-Api-Key": key}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert len(json.loads(response.read())["data"]["credits"]) == 5
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=10)
        stderr = proc.stderr.read()
    assert proc.returncode == 0
    assert "Traceback" not in stderr
    assert "sandbox stopped" in stderr


@pytest.mark.parametrize(
    ("host", "public"),
    [("0.0.0.0", True), ("sandbox.example", True), ("localhost", False), ("::1", False)],
)
def test_sandbox_command_banner_and_public_host_warning(
    monkeypatch: pytest.MonkeyPatch, host: str, public: bool
) -> None:
    served: list[dict[str, Any]] = []

    class Started:
        base_url = "http://127.0.0.1:8080/v2.0"
        api_key = "sandbox-key"

    async def fake_serve(**kwargs: Any) -> None:
        served.append(kwargs)
        kwargs["ready"](Started())

    monkeypatch.setattr(_serve, "serve_sandbox", fake_serve)

    result = invoke(["sandbox", "--host", host, "--members", "7", "--seed", "3"])

    assert result.exit_code == 0
    assert (f"Warning: {host} is not a loopback address" in result.stderr) is public
    assert served[0]["host"] == host
    assert (served[0]["port"], served[0]["members"], served[0]["seed"]) == (8080, 7, 3)
    assert result.stdout.splitlines() == [
        "Inveterate sandbox: 7 members (ids 1..7); Ctrl-C to stop",
        "  base URL: http://127.0.0.1:8080/v2.0",
        "  API key:  sandbox-key",
        "  try:      curl -s -H 'X-Inveterate-Api-Key: sandbox-key' "
        "'http://127.0.0.1:8080/v2.0/admin/members/1/credits?limit=3'",
        "  or:       INVETERATE_BASE_URL=http://127.0.0.1:8080/v2.0 "
        "INVETERATE_API_KEY=sandbox-key inveterate credits list 1",
    ]
    assert result.stderr.endswith("sandbox stopped\n")


def test_sandbox_command_reports_a_busy_port(server: ThreadedSandbox) -> None:
    result = invoke(["sandbox", "--port", str(server.sandbox.port)])

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot serve on 127.0.0.1:{server.sandbox.port}")


def test_python_dash_m_runs_the_cli(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setattr(sys, "argv", ["inveterate", "--version"])

    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("inveterate_async.cli", run_name="__main__")

    assert exit_info.value.code == 0
    assert "inveterate, version" in capsys.readouterr().out


# --- output details -------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "expected"), [("csv", [CSV_HEADER]), ("table", JSONL_KEYS[:-1])])
def test_empty_ledger_prints_just_the_header(
    server: ThreadedSandbox, fmt: str, expected: list[str]
) -> None:
    result = api(server, "credits", "list", "nobody", "--format", fmt)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (lines if fmt == "csv" else lines[0].split()) == expected


def test_json_text_keeps_decimal_digits_everywhere() -> None:
    value = {"a": [Decimal("1.10"), Decimal("-0.00"), Decimal("1E+3")], "b": {"c": None}, "é": "ü"}

    assert _output.json_text(value) == '{"a":[1.10,-0.00,1E+3],"b":{"c":null},"é":"ü"}'
    assert json.loads(_output.json_text(value), parse_float=Decimal)["a"][0] == Decimal("1.10")
    with pytest.raises(ValueError, match="JSON number"):
        _output.json_text(Decimal("NaN"))


def test_cell_text() -> None:
    assert _output.cell_text(None) == ""
    assert _output.cell_text(Decimal("0.10")) == "0.10"
    assert _output.cell_text(7) == "7"
    assert _output.cell_text(True) == "true"
    assert _output.cell_text({"x": Decimal("2.50")}) == '{"x":2.50}'


def test_a_closed_stream_is_not_a_terminal() -> None:
    stream = io.StringIO()
    stream.close()

    assert _terminal.is_terminal(stream) is False
    assert _terminal.is_terminal(object()) is False


# --- more add outcomes ----------------------------------------------------------------


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, asyncio.CancelledError])
def test_add_interrupted_warns_that_it_may_have_been_applied(
    server: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch, interruption: type[BaseException]
) -> None:
    async def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise interruption

    monkeypatch.setattr(InveterateClient, "create_credit", interrupted)

    result = api(server, "credits", "add", "42", "1.00", "--yes")

    assert result.exit_code == 130
    assert result.stderr.startswith(
        "interrupted: the credit may have been applied: check the ledger before retrying"
    )


def test_add_that_never_left_exits_1_without_the_warning() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now: the connection is refused before anything is sent.
    base_url = f"http://127.0.0.1:{port}/v2.0"

    options = ["--api-key", API_KEY, "--base-url", base_url, "--max-retries", "0"]

    result = invoke([*options, "credits", "add", "42", "1.00", "--yes"])

    assert result.exit_code == 1
    assert "Error: APIConnectionError" in result.stderr
    assert "may have been applied" not in result.stderr


def test_add_rate_limited_exits_1(server: ThreadedSandbox) -> None:
    server.call(server.sandbox.fail_next, 429, method="POST")

    result = api(server, "credits", "add", "42", "1.00", "--yes")

    assert result.exit_code == 1
    assert "Error: RateLimitError: HTTP 429" in result.stderr


def test_add_with_an_empty_member_id_is_a_usage_error(server: ThreadedSandbox) -> None:
    result = api(server, "credits", "add", "", "1.00", "--yes")

    assert result.exit_code == 2
    assert "customer_id must not be empty" in result.stderr
    assert server.requests() == []


def test_the_sdk_does_not_import_click_or_rich() -> None:
    code = (
        "import sys, inveterate_async, inveterate_async.testing; "
        "print(sorted(m for m in ('click', 'rich') if m in sys.modules))"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
