"""What the commands print: one timestamp format, tables at 80 columns, plurals, the
result of ``add`` in the SDK's names, the progress bar's time left, ``-v`` and ``--timeout``;
and the parts that read ids and write files, unit by unit."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from inveterate_async import CreditResult, ExportOutputError, ExportStateError, InveterateClient
from inveterate_async._export import target as _target
from inveterate_async._export.state import Checkpoint, StateFile
from inveterate_async.cli import _credits, _ids, _output, _progress
from inveterate_async.cli._core import Settings
from inveterate_async.cli._exits import WriteFailed
from inveterate_async.cli._hints import command_line
from inveterate_async.testing import ManualClock

from .cli_support import API_KEY, JSONL_KEYS, ThreadedSandbox, api, invoke, jsonl


@pytest.fixture
def server() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


# --- formats ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc), "2024-03-01T12:00:00Z"),
        (datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=timezone.utc), "2024-03-01T12:00:00.250Z"),
        (
            datetime(2024, 3, 1, 12, 0, 0, 250001, tzinfo=timezone.utc),
            "2024-03-01T12:00:00.250001Z",
        ),
        (datetime(2024, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), "2024-03-01T12:00:00Z"),
        (datetime(2024, 3, 1, 12, 0), "2024-03-01T12:00:00Z"),  # naive: taken as UTC
    ],
)
def test_one_timestamp_format(moment: datetime, text: str) -> None:
    assert _output.timestamp_text(moment) == text


def test_plural_forms() -> None:
    assert _output.plural(1, "page") == "1 page"
    assert _output.plural(0, "page") == "0 pages"
    assert _output.plural(2, "credit") == "2 credits"
    assert _output.plural(1234, "credit", grouped=True) == "1,234 credits"


def test_a_table_keeps_long_notes_on_one_line_at_80_columns(
    server: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_credits, "is_terminal", lambda stream: stream is sys.stdout)
    note = "Refund for order #1001 (damaged parcel, customer called twice)"
    server.call(server.sandbox.add_credits, "42", [{"amount": "10.10", "note": note}, "2.00"])

    narrow = api(server, "credits", "list", "42")
    wide = invoke(
        ["--api-key", API_KEY, "--base-url", server.base_url, "credits", "list", "42"],
        env={"COLUMNS": "120"},
    )

    header, first, second = narrow.stdout.splitlines()
    assert header.split() == JSONL_KEYS[:-1]
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 80
    assert first.startswith("2024-03-01T12:00:00Z")
    assert first.rstrip().endswith("…")
    assert note[:20] in first  # readable: one piece of at least 20 characters
    assert second.split()[:2] == ["2024-03-01T12:01:00Z", "2.00"]
    assert wide.stdout.splitlines()[0].split() == JSONL_KEYS
    assert "cr_000001" in wide.stdout


def test_ledger_progress_counts_in_singular_and_plural() -> None:
    file = io.StringIO()
    console = Console(file=file, force_terminal=True, width=100)
    with _progress.ledger_progress(True, redirect_stdout=False, console=console) as tracker:
        tracker.update(credits=1, pages=1)
    assert "reading ledger: 1 credit, 1 page" in file.getvalue()


@pytest.mark.parametrize(("total", "eta"), [(10, True), (None, False)])
def test_the_export_bar_shows_the_time_left_when_the_total_is_known(
    total: int | None, eta: bool
) -> None:
    now = [0.0]
    file = io.StringIO()
    console = Console(file=file, force_terminal=True, width=150)
    with _progress.export_progress(
        True, total=total, done=2, console=console, get_time=lambda: now[0]
    ) as tracker:
        for members in range(3, 7):
            now[0] += 1.0  # one member a second
            tracker.update(credits=members * 5, members=members)
    text = file.getvalue()
    assert ("eta" in text) is eta
    if eta:
        assert "6/10" in text
        assert "0:00:04" in text  # 4 members left at one a second
    assert "30 credits" in text


# --- credits add --------------------------------------------------------------------


def test_add_shows_the_new_entry_as_a_table_on_a_terminal(
    server: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_credits, "is_terminal", lambda stream: stream is sys.stdout)
    # The sandbox stamps a POSTed credit with its clock: 2024-03-01T12:00:00Z here.
    server.call(setattr, server.sandbox, "clock", ManualClock(1709294400))

    result = api(server, "credits", "add", "42", "10.00", "--yes", "--note", "Hi")

    assert result.exit_code == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == JSONL_KEYS[:-1]  # the SDK's names
    assert row.split()[:3] == ["2024-03-01T12:00:00Z", "10.00", "10.00"]


def test_add_shows_an_unexpected_answer_in_snake_case(
    server: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def created(*args: Any, **kwargs: Any) -> CreditResult:
        return CreditResult("Credit created", {"creditId": 7, "newBalance": Decimal("1.50")})

    monkeypatch.setattr(InveterateClient, "create_credit", created)

    result = api(server, "credits", "add", "42", "1.50", "--yes")

    assert result.exit_code == 0
    assert jsonl(result.stdout) == [{"credit_id": 7, "new_balance": Decimal("1.50")}]
    assert result.stderr == "Credit created\n"


# --- global options -----------------------------------------------------------------


def test_verbose_logs_each_attempt_on_stderr_without_the_key(server: ThreadedSandbox) -> None:
    server.call(server.sandbox.add_credits, "1", ["1.00"])
    logger = logging.getLogger("inveterate_async")

    result = invoke(
        ["-v", "--api-key", API_KEY, "--base-url", server.base_url, "credits", "list", "1"]
    )

    assert result.exit_code == 0, result.stderr
    (line,) = result.stderr.splitlines()
    assert " inveterate_async DEBUG: GET /v2.0/admin/members/1/credits -> 200 (attempt 1, " in line
    assert API_KEY not in result.stderr
    assert logger.handlers == []  # undone when the command ends
    assert logger.level == logging.NOTSET


def test_timeout_bounds_one_attempt(tmp_path: Path) -> None:
    with ThreadedSandbox(latency=10) as slow:
        result = invoke(
            ["--api-key", API_KEY, "--base-url", slow.base_url, "--timeout", "0.2",
             "--max-retries", "0", "credits", "list", "1"]
        )  # fmt: skip

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: APITimeoutError: ")


def test_hints_repeat_the_global_options_but_never_the_key() -> None:
    sandbox = Settings(sandbox=True, sandbox_members=5, max_retries=1, timeout=2.5)
    remote = Settings(
        api_key="k",
        base_url="https://api.example/v2.0",
        key_in_arguments=True,
        base_url_in_arguments=True,
    )
    from_environment = Settings(api_key="k", base_url="https://api.example/v2.0")

    assert command_line(sandbox, ["credits", "list", "1"]) == (
        "inveterate --sandbox --sandbox-members 5 --max-retries 1 --timeout 2.5 credits list 1"
    )
    assert command_line(remote, ["credits", "list", "a b"]) == (
        "inveterate --base-url https://api.example/v2.0 credits list 'a b'"
    )
    assert command_line(from_environment, ["credits", "list", "1"]) == "inveterate credits list 1"


# --- reading ids --------------------------------------------------------------------


def lines_of(stream: Any) -> list[str]:
    async def read() -> list[str]:
        return [line async for line in _ids.read_lines(stream)]

    return asyncio.run(read())


def test_ids_from_a_pipe_are_read_as_they_come_and_a_wait_can_be_cancelled() -> None:
    read_end, write_end = os.pipe()

    async def read(stream: Any) -> list[str]:
        lines = _ids.read_lines(stream)
        got = [await anext(lines), await anext(lines)]
        waiting = asyncio.ensure_future(anext(lines))  # the pipe is open, nothing comes
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await lines.aclose()
        return got

    with open(read_end, encoding="utf-8") as stream:
        os.write(write_end, "\ufeffa\r\nb\n".encode())
        assert asyncio.run(read(stream)) == ["a", "b"]
    os.close(write_end)


def test_ids_from_a_pipe_end_with_its_last_line() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, "1\n2\n\u00e9t\u00e9".encode())
    os.close(write_end)
    with open(read_end, encoding="utf-8") as stream:
        assert lines_of(stream) == ["1", "2", "été"]


def test_ids_from_a_file_devnull_or_a_stream_without_a_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("1\n2\n", encoding="utf-8")
    with path.open(encoding="utf-8") as file, open(os.devnull, encoding="utf-8") as null:
        assert lines_of(file) == ["1", "2"]
        assert lines_of(null) == []
    assert lines_of(io.StringIO("x\ny")) == ["x", "y"]


def test_counting_ids_for_the_progress_bar(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("member_id\n1\n\n2\n", encoding="utf-8")

    assert _ids.count_ids(["a", " "], str(path), skip_header=True) == 3
    assert _ids.count_ids([], str(path), skip_header=False) == 3
    assert _ids.duplicates_warning({}) is None
    many = {str(n): 1 for n in range(12)}
    warning = _ids.duplicates_warning(many)
    assert warning is not None
    assert warning.endswith("9 (2 times), and 2 more")


# --- files: the error paths -----------------------------------------------------------


class BrokenStream(io.BytesIO):
    """A stream whose every write, flush and truncate fails as a full disk does."""

    def _full(self, *args: object) -> Any:
        raise OSError(28, "No space left on device")

    write = flush = truncate = _full

    def fileno(self) -> int:
        raise OSError(28, "No space left on device")


def test_every_write_of_the_sink_fails_as_one_line(tmp_path: Path) -> None:
    state = StateFile(str(tmp_path / "s.db"), {"out": "x"})
    sink = _target.Sink(BrokenStream(), name="x.csv", seekable=True, state=state)
    try:
        attempts: list[Callable[[], object]] = [
            lambda: sink.write(b"a"),
            lambda: sink.truncate(0),
            sink.flush,
            lambda: sink.save(Checkpoint(), []),
        ]
        for attempt in attempts:
            with pytest.raises(ExportOutputError, match=r"^cannot write x\.csv: No space left"):
                attempt()
    finally:
        state.close()


def test_output_target_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _target.OutputTarget(str(tmp_path / "x.csv"))
    (tmp_path / ".x.csv.partial").mkdir()  # something in the way of the partial file
    with pytest.raises(ExportOutputError, match=r"cannot write .*x.csv: Is a directory"):
        target.open_new(b"")
    (tmp_path / ".x.csv.partial").rmdir()
    stream = target.open_new(b"0123456789")
    stream.close()
    with pytest.raises(ExportStateError, match="is shorter than its state file says"):
        target.open_saved(100, "s.db")

    def refuse(*args: object) -> None:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    stream = target.open_saved(10, "s.db")
    with pytest.raises(ExportOutputError, match=r"cannot write .*x.csv: Permission denied"):
        target.commit(stream)
    assert stream.closed
    monkeypatch.undo()
    target.discard()
    target.discard()  # nothing left: no error
    assert os.listdir(tmp_path) == []


def test_a_device_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.chmod(fifo, 0o200)
    target = _target.OutputTarget(str(fifo))
    assert not target.is_file
    target.check(overwrite=False)  # a device is written, not replaced: no --force needed

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(13, "Permission denied")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("builtins.open", refuse)
        with pytest.raises(ExportOutputError, match=r"cannot write .*fifo: Permission denied"):
            target.open_direct()


def test_a_state_file_in_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ExportStateError, match="cannot open the state file"):
        StateFile(str(tmp_path / "no" / "s.db"), {})


def test_a_state_file_that_cannot_be_written_is_a_write_failure(tmp_path: Path) -> None:
    state = StateFile(str(tmp_path / "s.db"), {})
    state.close()
    with pytest.raises(ExportStateError, match="cannot write the state file"):
        state.save(Checkpoint())


def test_writers_report_a_full_disk_in_one_line() -> None:
    stream = io.TextIOWrapper(BrokenStream(), write_through=True)
    writer = _output.make_writer("jsonl", stream, ["a"], target="out.jsonl")

    with pytest.raises(WriteFailed, match=r"^cannot write out\.jsonl: No space left on device$"):
        writer.write_row([1])
    with pytest.raises(WriteFailed):
        writer.flush()
