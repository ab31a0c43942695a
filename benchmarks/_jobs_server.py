"""The job benchmark's API: the SDK's ``Sandbox`` in a process of its own, reset per run.

``python -m benchmarks._jobs_server`` reads one JSON command per line on stdin and answers
each with one JSON line on stdout; EOF on stdin stops it.

- ``{"op": "reset", "members": N, "latency_ms": L}``: close the current sandbox and start a
  fresh one on a new port: members ``"1"`` to ``str(N)`` seeded with ``SEEDED_CREDITS``
  entries each, every request waiting L ms in its handler (``asyncio.sleep``). Answers
  ``{"base_url": ...}``.
- ``{"op": "stats"}``: requests by method and error answers since the reset, and the
  process's CPU time (user+sys) since then.
- ``{"op": "verify", "job": JOB}``: whether every member's ledger holds its seeded entries
  and exactly one POSTed credit per adjustment of the job (amounts by value), with the
  batch's notes or notes tagged with each ref. Answers ``{"problems": [...], "notes":
  "plain" | "tagged" | null}``.

The sandbox keeps no request list (``record_requests=False``); counting happens in
:class:`CountingSandbox`. Seeded ledgers are moved out of the garbage collector's way
(``gc.freeze``) so that a run does not pay for scanning them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import subprocess
import sys
from collections import Counter, defaultdict
from decimal import Decimal
from types import TracebackType
from typing import Any

from aiohttp import web

from benchmarks._jobs_spec import SEEDED_CREDITS, Job, Row
from benchmarks._server import _read_ready_line
from benchmarks.cluster import API_KEY
from inveterate_async.testing import Sandbox

_SHOWN_PROBLEMS = 5


class CountingSandbox(Sandbox):
    """A sandbox that counts the requests it gets, by method, and its error answers."""

    def __init__(self, latency: float) -> None:
        super().__init__(API_KEY, latency=latency, record_requests=False)
        self.methods: Counter[str] = Counter()
        self.errors = 0

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.methods[request.method] += 1
        response = await super()._handle(request)
        if response.status >= 400:
            self.errors += 1
        return response


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _tagged(rows: list[Row], posted: list[tuple[Decimal, str | None]]) -> bool:
    """Whether each row has exactly one posted entry naming its ref (refs have a fixed
    width, so none is part of another), with its amount and its note (if any) in it."""
    if len(posted) != len(rows):
        return False
    for row in rows:
        found = [(amount, note) for amount, note in posted if note and row.ref in note]
        if len(found) != 1:
            return False
        amount, note = found[0]
        if amount != Decimal(row.amount) or (row.note is not None and row.note not in str(note)):
            return False
    return True


def verify(sandbox: Sandbox, job: Job) -> dict[str, Any]:
    """Check every member's ledger against the job's batch (see the module docstring)."""
    expected: defaultdict[str, list[Row]] = defaultdict(list)
    for row in job.rows():
        expected[row.member_id].append(row)
    problems: list[str] = []
    plain = tagged = True
    for number in range(1, job.members + 1):
        member_id = str(number)
        ledger = sandbox.ledger(member_id)
        posted = [(entry["amount"], entry["note"]) for entry in ledger if entry["reason"] == "api"]
        seeded = len(ledger) - len(posted)
        rows = expected.get(member_id, [])
        if seeded != SEEDED_CREDITS:
            problems.append(f"member {member_id}: {seeded} seeded entries, {SEEDED_CREDITS} made")
        amounts = Counter(amount for amount, _ in posted)
        if amounts != Counter(Decimal(row.amount) for row in rows):
            problems.append(
                f"member {member_id}: {len(posted)} credit(s) posted for {len(rows)} "
                f"adjustment(s), or other amounts: {sorted(map(str, amounts.elements()))}"
            )
        plain = plain and Counter(posted) == Counter((Decimal(r.amount), r.note) for r in rows)
        tagged = tagged and _tagged(rows, posted)
    shown = problems[:_SHOWN_PROBLEMS]
    if len(problems) > len(shown):
        shown.append(f"... and {len(problems) - len(shown)} more")
    notes = "plain" if plain else "tagged" if tagged else None
    if notes is None and not problems:
        shown.append("notes are neither the batch's nor tagged with each row's ref")
    return {"problems": shown, "notes": notes}


class _State:
    def __init__(self) -> None:
        self.sandbox: CountingSandbox | None = None
        self.cpu_at_reset = 0.0

    async def reset(self, members: int, latency_ms: float) -> dict[str, Any]:
        await self.close()
        gc.unfreeze()
        gc.collect()
        sandbox = CountingSandbox(latency_ms / 1000)
        await sandbox.start()
        self.sandbox = sandbox
        sandbox.seed_members(members, credits_per_member=SEEDED_CREDITS)
        gc.collect()
        gc.freeze()
        self.cpu_at_reset = _cpu_s()
        return {"base_url": sandbox.base_url}

    def stats(self) -> dict[str, Any]:
        sandbox = self._started()
        return {
            "methods": dict(sandbox.methods),
            "errors": sandbox.errors,
            "cpu_s": _cpu_s() - self.cpu_at_reset,
            "max_in_flight": sandbox.max_in_flight,
        }

    def _started(self) -> CountingSandbox:
        if self.sandbox is None:
            raise RuntimeError("no sandbox: reset first")
        return self.sandbox

    async def close(self) -> None:
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            await sandbox.close()

    async def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        if op == "reset":
            return await self.reset(command["members"], command["latency_ms"])
        if op == "stats":
            return self.stats()
        if op == "verify":
            return verify(self._started(), Job.from_json(command["job"]))
        raise ValueError(f"unknown op {op!r}")


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    state = _State()
    try:
        while line := await reader.readline():
            try:
                answer = await state.answer(json.loads(line))
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        await state.close()


class JobServer:
    """The server process as the harness drives it; a context manager that stops it."""

    def __init__(self, root: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._jobs_server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            bufsize=0,
        )

    def ask(self, timeout: float = 120.0, **command: Any) -> dict[str, Any]:
        """Send one command and return its answer; RuntimeError for an error answer."""
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(json.dumps(command).encode() + b"\n")
        line = _read_ready_line(stdout, timeout)
        if not line:
            raise RuntimeError(f"the job server exited with status {self._proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"job server: {answer['error']}")
        return answer

    def reset(self, members: int, latency_ms: float) -> str:
        """A fresh sandbox for the next run; its base URL."""
        timeout = 60 + members / 1_000
        base_url: str = self.ask(timeout, op="reset", members=members, latency_ms=latency_ms)[
            "base_url"
        ]
        return base_url

    def __enter__(self) -> JobServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


if __name__ == "__main__":
    asyncio.run(_serve())
