"""Helpers shared by the CLI tests: a Sandbox on a background thread, CliRunner calls, and
real ``inveterate`` subprocesses (always cleaned up)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from click.testing import CliRunner, Result

from inveterate_async.cli import app as cli_app
from inveterate_async.testing import Sandbox

API_KEY = "sk_cli_test_7d1e-SECRET"
T = TypeVar("T")

JSONL_KEYS = ["created_at", "amount", "new_balance", "reason", "note", "id"]
CSV_HEADER = "created_at,amount,new_balance,reason,note,id"
EXPORT_HEADER = "member_id,created_at,amount,new_balance,reason,note,id"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ThreadedSandbox:
    """A Sandbox served by an event loop in a background thread.

    It outlives the commands run against it, and can be stopped and started again on the
    same port with its ledgers (and the cursors it issued) intact: a server that dies and
    comes back.
    """

    def __init__(self, *, port: int = 0, latency: float = 0.0) -> None:
        self.sandbox = Sandbox(api_key=API_KEY, host="127.0.0.1", port=port, latency=latency)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedSandbox:
        self.thread.start()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sandbox.start(), self.loop).result(timeout=10)

    def stop(self) -> None:
        """Stop serving: connections are closed and new ones refused."""
        asyncio.run_coroutine_threadsafe(self.sandbox.close(), self.loop).result(timeout=10)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the sandbox's loop thread and return its result."""

        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    @property
    def base_url(self) -> str:
        return self.sandbox.base_url

    def requests(self, method: str | None = None) -> list[Any]:
        recorded = self.call(lambda: list(self.sandbox.requests))
        return [r for r in recorded if method is None or r.method == method]

    def request_count(self) -> int:
        return self.call(lambda: len(self.sandbox.requests))

    def ledger_ids(self, member: str) -> list[str]:
        return [entry["id"] for entry in self.call(self.sandbox.ledger, member)]


def invoke(
    args: Sequence[str],
    *,
    input: str | None = None,
    env: Mapping[str, str | None] | None = None,
) -> Result:
    """Run the CLI; every output is checked never to show the API key."""
    environment: dict[str, str | None] = {"INVETERATE_API_KEY": None, "INVETERATE_BASE_URL": None}
    environment.update(env or {})
    result = CliRunner().invoke(cli_app, list(args), input=input, env=environment)
    assert API_KEY not in result.output
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def api(server: ThreadedSandbox, *args: str) -> Result:
    """Run a command against the threaded sandbox, with no retries (no backoff sleeps)."""
    return invoke(
        ["--api-key", API_KEY, "--base-url", server.base_url, "--max-retries", "0", *args]
    )


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line, parse_float=Decimal) for line in text.splitlines()]


def wait_until(condition: Callable[[], bool], *, timeout: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.005)


def cli(*args: str) -> list[str]:
    """The argv of a real ``inveterate`` process with these arguments."""
    return [sys.executable, "-m", "inveterate_async.cli", *args]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: the test key, nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVETERATE_")}
    env.update({"INVETERATE_API_KEY": API_KEY, "COLUMNS": "100"}, **extra)
    return env


@contextmanager
def spawned(
    argv: Sequence[str],
    logs: Path,
    *,
    stdin: int | None = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process whose stdout and stderr go to files in the directory ``logs`` (made
    if needed); killed (if still running) and reaped when the block ends."""
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
        proc = subprocess.Popen(
            list(argv),
            stdin=stdin,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else child_env(),
            preexec_fn=preexec_fn,
            cwd=cwd,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            if proc.stdin is not None:
                proc.stdin.close()


def output_of(logs: Path) -> tuple[str, str]:
    """The stdout and stderr a :func:`spawned` child wrote."""
    return (
        (logs / "stdout").read_text(encoding="utf-8"),
        (logs / "stderr").read_text(encoding="utf-8"),
    )


def cursor_from(stderr: str) -> str:
    """The value of the --cursor option in the resume command printed on stderr."""
    for line in stderr.splitlines():
        if "--cursor " in line:
            words = shlex.split(line[line.index("inveterate") :])
            return words[words.index("--cursor") + 1]
    raise AssertionError(f"no --cursor in stderr: {stderr!r}")


def fail_after_first_cursor(server: ThreadedSandbox, member: str, *, times: int = 1) -> None:
    """Make the request after ``member``'s first page fail (page 2, or the next member)."""
    sandbox = server.sandbox
    issued: list[str] = []

    def cursor(customer_id: str, entry: Mapping[str, Any]) -> str:
        if customer_id == member and not issued:
            sandbox.fail_next(500, times=times, customer_id=member)
            issued.append(entry["id"])
        return f"{customer_id}:{entry['id']}"

    server.call(setattr, sandbox, "cursor_factory", cursor)
