"""``inveterate sandbox`` for rehearsing bulk adjustments: the write-fault and visibility
flags, their checks, the banner that names them, and a real process that serves them."""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.client import RemoteDisconnected
from typing import IO, Any

import aiohttp
import pytest
from click.testing import CliRunner

from inveterate_async.cli import _serve, serve_sandbox
from inveterate_async.cli import app as cli_app
from inveterate_async.testing import ManualClock, Sandbox
from tests.cluster_processes import CLI, Processes, clean_env

KEY = "sk_rehearsal_key"
WRITE_FLAGS = [
    "--fail-writes-before", "0.3", "--fail-writes-after", "0.3", "--drop-writes-after", "0.2",
]  # fmt: skip
WRITE_SHARES = {"before": 0.3, "after": 0.3, "dropped": 0.2}


def served_options(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> dict[str, Any] | None:
    """What ``inveterate sandbox ARGS`` gives serve_sandbox (None: it never got that far)."""
    served: list[dict[str, Any]] = []

    async def fake_serve(**kwargs: Any) -> None:
        served.append(kwargs)

    monkeypatch.setattr(_serve, "serve_sandbox", fake_serve)
    result = CliRunner().invoke(cli_app, ["sandbox", *args])
    assert result.exit_code == (0 if served else 2), result.output
    return served[0] if served else None


def test_the_flags_reach_serve_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    options = served_options(
        monkeypatch, [*WRITE_FLAGS, "--visibility-delay", "2.5", "--fault-seed", "11"]
    )
    assert options is not None
    assert options["fail_writes_before"] == options["fail_writes_after"] == 0.3
    assert (options["drop_writes_after"], options["visibility_delay"]) == (0.2, 2.5)
    assert options["fault_seed"] == 11


def test_without_the_flags_nothing_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    options = served_options(monkeypatch, [])
    assert options is not None
    assert options["fail_writes_before"] == options["fail_writes_after"] == 0
    assert (options["drop_writes_after"], options["visibility_delay"]) == (0, 0)
    assert options["fault_seed"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fail-writes-before", "1.5"], "'--fail-writes-before': 1.5 is not in the range"),
        (["--fail-writes-after", "-0.1"], "'--fail-writes-after': -0.1 is not in the range"),
        (["--drop-writes-after", "nan"], "'--drop-writes-after': 'nan' is not a finite number"),
        (["--drop-writes-after", "half"], "'--drop-writes-after': 'half' is not a valid float"),
        (["--fail-rate", "nan"], "'--fail-rate': 'nan' is not a finite number"),
        (["--visibility-delay", "-1"], "'--visibility-delay': -1.0 is not in the range x>=0"),
        (["--visibility-delay", "inf"], "'--visibility-delay': 'inf' is not a finite number"),
        (["--fault-seed", "x"], "'--fault-seed': 'x' is not a valid integer"),
        (
            ["--fail-writes-before", "0.6", "--drop-writes-after", "0.5"],
            "--fail-writes-before, --fail-writes-after and --drop-writes-after must sum to at "
            "most 1 (they sum to 1.1)",
        ),
    ],
)
def test_bad_values_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setattr(_serve, "serve_sandbox", pytest.fail)
    result = CliRunner().invoke(cli_app, ["sandbox", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def banner(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> list[str]:
    class Started:
        base_url = "http://127.0.0.1:8080/v2.0"
        api_key = "sandbox-key"

    async def fake_serve(**kwargs: Any) -> None:
        kwargs["ready"](Started())

    monkeypatch.setattr(_serve, "serve_sandbox", fake_serve)
    result = CliRunner().invoke(cli_app, ["sandbox", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_the_banner_names_the_active_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = banner(
        monkeypatch,
        [*WRITE_FLAGS, "--fail-rate", "0.01", "--visibility-delay", "30", "--seed", "4"],
    )
    assert lines[5:] == [
        "  faults:   POSTs: 30% answered 500 before applying, 30% applied, then answered 500, "
        "20% applied, then dropped without an answer (seed 4)",
        "  faults:   GETs: 1% answered 503 (seed 4)",
        "  delay:    a written credit shows in GETs 30 s later",
    ]
    only_drops = banner(monkeypatch, ["--drop-writes-after", "0.125", "--fault-seed", "9"])
    assert only_drops[5:] == [
        "  faults:   POSTs: 12.5% applied, then dropped without an answer (seed 9)"
    ]


# --- serve_sandbox -----------------------------------------------------------------------


async def post_answers(http: aiohttp.ClientSession, base_url: str, count: int) -> list[str]:
    answers = []
    for number in range(count):
        try:
            async with http.post(
                f"{base_url}/admin/members/1/credits",
                headers={"X-Inveterate-Api-Key": KEY},
                json={"amount": 1, "note": f"row-{number}"},
            ) as response:
                answers.append(str(response.status))
        except aiohttp.ServerDisconnectedError:
            answers.append("dropped")
    return answers


async def expected_run(count: int, seed: int) -> tuple[list[str], int]:
    """The answers of a Sandbox given ``WRITE_SHARES`` and ``seed`` directly, and how many
    of the writes it applied."""
    async with Sandbox(KEY) as sandbox, aiohttp.ClientSession() as http:
        sandbox.fail_writes_randomly(**WRITE_SHARES, seed=seed)
        answers = await post_answers(http, sandbox.base_url, count)
        return answers, len(sandbox.ledger("1"))


@pytest.mark.parametrize(("seed", "fault_seed", "drawn_from"), [(3, None, 3), (3, 8, 8)])
async def test_serve_sandbox_serves_the_faults_and_the_delay(
    seed: int, fault_seed: int | None, drawn_from: int
) -> None:
    stop = asyncio.Event()
    started: asyncio.Future[Sandbox] = asyncio.get_running_loop().create_future()
    clock = ManualClock(1_800_000_000.0)

    def ready(sandbox: Sandbox) -> None:
        sandbox.clock = clock  # to move the visibility delay by hand
        started.set_result(sandbox)

    serving = asyncio.create_task(
        serve_sandbox(
            stop=stop, port=0, members=1, credits_per_member=0, seed=seed, api_key=KEY,
            ready=ready, visibility_delay=60, fail_writes_before=0.3, fail_writes_after=0.3,
            drop_writes_after=0.2, fault_seed=fault_seed,
        )
    )  # fmt: skip
    try:
        sandbox = await started
        async with aiohttp.ClientSession() as http:
            answers = await post_answers(http, sandbox.base_url, 40)
            applied = len(sandbox.ledger("1"))
            url = f"{sandbox.base_url}/admin/members/1/credits?limit=100"
            headers = {"X-Inveterate-Api-Key": KEY}
            async with http.get(url, headers=headers) as early:
                hidden = (await early.json())["data"]["credits"]
            clock.advance(60)
            async with http.get(url, headers=headers) as late:
                shown = (await late.json())["data"]["credits"]
    finally:
        stop.set()
        await serving

    assert (answers, applied) == await expected_run(40, drawn_from)
    assert {"500", "dropped", "201"} <= set(answers)
    assert hidden == []  # applied, but not visible until the clock moved 60 s
    assert len(shown) == applied


async def test_serve_sandbox_refuses_a_bad_delay_before_binding() -> None:
    with pytest.raises(ValueError, match="visibility_delay"):
        await serve_sandbox(stop=asyncio.Event(), port=0, members=0, visibility_delay=-1)


# --- a real ``inveterate sandbox`` process -----------------------------------------------


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.close()


def forward(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))


def urllib_answers(base_url: str, count: int) -> list[str]:
    """POST ``count`` credits to member 1 with plain urllib; each one's answer."""
    answers = []
    for number in range(count):
        request = urllib.request.Request(
            f"{base_url}/admin/members/1/credits",
            data=json.dumps({"amount": 1, "note": f"row-{number}"}).encode(),
            headers={"X-Inveterate-Api-Key": KEY, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append(str(response.status))
        except urllib.error.HTTPError as error:
            answers.append(str(error.code))
            error.close()
        except RemoteDisconnected:
            answers.append("dropped")
    return answers


def test_a_sandbox_process_serves_the_flags(processes: Processes) -> None:
    process = processes.start(
        [*CLI, "sandbox", "--port", "0", "--api-key", KEY, "--members", "1",
         *WRITE_FLAGS, "--fault-seed", "5", "--visibility-delay", "3600"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=clean_env(),
    )  # fmt: skip
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=forward, args=(process.stdout, lines), daemon=True).start()
    printed = [lines.get(timeout=60) for _ in range(7)]
    base_url = printed[1].split("base URL:")[1].strip()
    assert printed[5:] == [
        "  faults:   POSTs: 30% answered 500 before applying, 30% applied, then answered 500, "
        "20% applied, then dropped without an answer (seed 5)",
        "  delay:    a written credit shows in GETs 3600 s later",
    ]

    answers = urllib_answers(base_url, 20)
    read = urllib.request.Request(
        f"{base_url}/admin/members/1/credits?limit=100", headers={"X-Inveterate-Api-Key": KEY}
    )
    with urllib.request.urlopen(read, timeout=30) as response:
        credits = json.load(response)["data"]["credits"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0

    with Sandbox(KEY).start_in_thread() as expected:
        expected.fail_writes_randomly(**WRITE_SHARES, seed=5)
        assert answers == urllib_answers(expected.base_url, 20)
    assert {"500", "dropped", "201"} <= set(answers)
    # Only the 5 seeded credits: every write of this run is hidden for an hour.
    assert len(credits) == 5
    assert all(credit["reason"] != "api" for credit in credits)
