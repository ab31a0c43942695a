"""Real ``inveterate credits apply`` processes in the ways the old bulk design applied a
credit twice or stranded a batch, checked credit by credit on the sandbox's ledger.

- two names for one journal (a symlink, a bind mount of its directory): the old lock was a
  ``PATH.lock`` file beside each *name*, so two processes ran the same batch at once; a
  hard link is refused (SQLite keeps the write-ahead log beside one name);
- a wall clock that steps forward: the old settle windows ran on ``time.time``, so a
  step ended them at once and a write that was slow to show was sent again;
- a full disk: the old journal reported the failed ROLLBACK instead of the full disk;
- a journal that cannot be written (a copy, a read-only mount): it must still be read;
- SIGKILL, then a new journal: the ledger read before the first send finds what the
  killed run applied;
- the key refused mid-batch: what was not sent stays pending, and a re-run finishes.

The sandbox runs in a thread of the test process (it outlives every CLI process); every
process started here is killed and reaped when its block ends, and every wait is for a
condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, suppress
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest

from inveterate_async import Journal
from inveterate_async.testing import RecordedRequest

from .bulk_helpers import TAG
from .cli_support import (
    ThreadedSandbox,
    api,
    child_env,
    cli,
    invoke,
    output_of,
    spawned,
    wait_until,
)

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not hasattr(signal, "SIGKILL"),
    reason="POSIX processes, signals, links and mounts",
)

LATENCY = 0.003  # seconds a request: two runs of 200 rows overlap for a good while
SETTLE = "1"  # seconds: far longer than the sandbox takes to apply a write it received
DEADLINE = 60.0  # seconds any one process may take


@pytest.fixture(name="server")
def threaded_sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox() as threaded:
        yield threaded


# --- batches and the ledger ----------------------------------------------------------------


@attrs.frozen
class Batch:
    path: Path
    rows: dict[str, tuple[str, Decimal]]  # ref -> (member, amount): one amount per row

    @property
    def members(self) -> list[str]:
        return sorted({member for member, _ in self.rows.values()})


def make_batch(directory: Path, prefix: str, rows: int, members: int) -> Batch:
    """A CSV batch of ``rows`` rows over ``members`` members, every amount different."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["ref,member_id,amount,note,force"]
    wanted = {}
    for n in range(rows):
        ref, member = f"{prefix}:{n}", f"{prefix}-m{n % members}"
        amount = f"{n // 100 + 1}.{n % 100:02d}"
        lines.append(f"{ref},{member},{amount},Process test,")
        wanted[ref] = (member, Decimal(amount))
    path = directory / f"{prefix}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Batch(path, wanted)


@attrs.frozen
class Tally:
    """What the sandbox's ledger holds of a batch, row by row."""

    rows: int
    credits: int  # credits of the batch's rows
    twice: int  # credits beyond the first of a row
    lost: int  # rows with no credit
    wrong: int  # credits tagged with a row's ref but of another member or amount, or
    # untagged credits that match no row

    @property
    def exactly_once(self) -> bool:
        return (self.credits, self.twice, self.lost, self.wrong) == (self.rows, 0, 0, 0)

    def __str__(self) -> str:
        return (
            f"rows {self.rows}, credits in ledger {self.credits}, applied twice {self.twice}, "
            f"lost {self.lost}, wrong {self.wrong}"
        )


def tally(server: ThreadedSandbox, batch: Batch) -> Tally:
    """Each API credit is a row's by its ``[ref:...]`` tag, or (untagged) by its member and
    amount, which are the row's alone."""
    by_content = {content: ref for ref, content in batch.rows.items()}

    def collect() -> tuple[dict[str, list[tuple[str, Decimal]]], int]:
        found: dict[str, list[tuple[str, Decimal]]] = {}
        wrong = 0
        for member in batch.members:
            for entry in server.sandbox.ledger(member):
                if entry["reason"] != "api":
                    continue
                credit = (member, entry["amount"])
                match = TAG.search(entry["note"] or "")
                ref = match["ref"] if match else by_content.get(credit)
                if ref in batch.rows and batch.rows[ref] == credit:
                    found.setdefault(ref, []).append(credit)
                else:
                    wrong += 1
        return found, wrong

    found, wrong = server.call(collect)
    return Tally(
        rows=len(batch.rows),
        credits=sum(len(credits) for credits in found.values()),
        twice=sum(len(credits) - 1 for credits in found.values()),
        lost=len(batch.rows) - len(found),
        wrong=wrong,
    )


def posts(server: ThreadedSandbox, since: int = 0) -> list[RecordedRequest]:
    """The writes the sandbox received (from the ``since``-th request on)."""
    return [r for r in server.requests()[since:] if r.method == "POST"]


def posted_refs(requests: Sequence[RecordedRequest]) -> list[str]:
    refs = []
    for request in requests:
        match = TAG.search(request.json().get("note") or "")
        assert match is not None, request.body
        refs.append(match["ref"])
    return refs


def wait_until_idle(server: ThreadedSandbox) -> None:
    """Until the sandbox has answered every request it received."""
    wait_until(lambda: server.call(lambda: server.sandbox.in_flight) == 0, what="sandbox idle")


class PostCounter:
    """A ``fail_next`` match that only observes: counts POSTs, sets an event at ``count``."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.reached = threading.Event()

    def __call__(self, request: RecordedRequest) -> bool:
        self.seen += 1
        if self.seen >= self.count:
            self.reached.set()
        return False  # never answers the request


def observe_posts(server: ThreadedSandbox, counter: PostCounter) -> None:
    server.call(server.sandbox.fail_next, method="POST", times=10**9, match=counter)


# --- commands --------------------------------------------------------------------------------


def apply_argv(batch: Batch, journal: Path, *options: str) -> list[str]:
    """A real ``credits apply`` process (key and URL from the environment)."""
    return cli(
        *("--max-retries", "0", "credits", "apply", str(batch.path)),
        *("--journal", str(journal), "--yes", "--tag-notes", *options),
    )


def env_for(server: ThreadedSandbox, **extra: str) -> dict[str, str]:
    return child_env(INVETERATE_BASE_URL=server.base_url, **extra)


def rerun(server: ThreadedSandbox, batch: Batch, journal: Path, *options: str) -> str:
    """``credits apply`` in this process until done; its stderr."""
    words = ["credits", "apply", str(batch.path), "--journal", str(journal), "--yes"]
    result = api(server, *words, "--tag-notes", *options)
    assert result.exit_code == 0, result.output
    return result.stderr


def journal_counts(journal: Path, code: int | None = 0) -> dict[str, int]:
    """The per-state counts ``credits journal`` shows (it must exit with ``code``, unless
    None)."""
    result = invoke(["credits", "journal", str(journal)])
    assert code is None or result.exit_code == code, result.output
    table = result.stdout.split("\n\n")[0]
    shown = {s: int(n.replace(",", "")) for s, n in re.findall(r"^(\w+) +([\d,]+) ", table, re.M)}
    total = shown.pop("total")
    assert total == sum(shown.values()), result.stdout
    return shown


def journal_shows(journal: Path, counts: dict[str, int], code: int = 0) -> None:
    """``credits journal`` shows exactly these per-state counts."""
    assert journal_counts(journal, code) == counts


def create_journal(path: Path) -> None:
    """An empty journal file (the schema, no rows), closed."""

    async def create() -> None:
        async with Journal(path):
            pass

    asyncio.run(create())


# --- 1. two names for one journal --------------------------------------------------------


ROUND_ROWS = 200
ROUND_MEMBERS = 40
ROUNDS = 10


@attrs.frozen
class Race:
    kind: str
    codes: tuple[int, int]
    posts: int
    tally: Tally

    def __str__(self) -> str:
        return f"{self.kind}: exit codes {self.codes}, POSTs {self.posts}, {self.tally}"


def second_name(directory: Path, journal: Path, kind: str, stack: ExitStack) -> Path:
    """Another name for ``journal``, in another directory: a symlink, or the journal's
    directory bind-mounted elsewhere (root only; unmounted when ``stack`` closes)."""
    if kind == "symlink":
        link = directory / "other" / "via-symlink.sqlite"
        link.symlink_to(journal)
        return link
    require_root("a bind mount")
    mount("--bind", str(journal.parent), str(directory / "other"))
    stack.callback(umount, directory / "other")
    return directory / "other" / journal.name


def race(server: ThreadedSandbox, directory: Path, kind: str) -> Race:
    """Two ``credits apply`` processes on one batch, started together, one through the
    journal's own name and one through a second name (``kind``) in another directory;
    then a final run to finish, and ``credits journal``."""
    batch = make_batch(directory, directory.name, ROUND_ROWS, ROUND_MEMBERS)
    (directory / "own").mkdir()
    (directory / "other").mkdir()
    journal = directory / "own" / "journal.sqlite"
    create_journal(journal)
    with ExitStack() as names:
        link = second_name(directory, journal, kind, names)
        assert link.stat().st_ino == journal.stat().st_ino
        assert os.path.realpath(link) != os.path.realpath(journal) or kind == "symlink"
        server.call(setattr, server.sandbox, "latency", LATENCY)
        before = len(server.requests())
        logs = [directory / "logs-own", directory / "logs-other"]
        with ExitStack() as stack:
            procs = [
                stack.enter_context(
                    spawned(apply_argv(batch, name, "--concurrency", "8"), log, env=env)
                )
                for name, log, env in zip(
                    (journal, link), logs, (env_for(server), env_for(server)), strict=True
                )
            ]
            codes = (procs[0].wait(DEADLINE), procs[1].wait(DEADLINE))
        server.call(setattr, server.sandbox, "latency", 0.0)
        for code, log in zip(codes, logs, strict=True):
            _, err = output_of(log)
            assert "Traceback" not in err
            if code == 2:
                # The other held the lock on the file itself: this one sent nothing.
                assert "is in use by" in err, err
                assert "nothing was sent" in err, err
            else:
                assert code == 0, err
        assert 0 in codes
        sent = len(posts(server, before))
        result = Race(kind, codes, sent, tally(server, batch))
        # The final run, through the other name: nothing is left to send.
        requests = len(server.requests())
        rerun(server, batch, link, "--settle", SETTLE)
        assert posts(server, requests) == []
    journal_shows(journal, {"applied": ROUND_ROWS})
    return result


@pytest.mark.parametrize("kind", ["symlink", "bind mount"])
def test_two_processes_through_two_names_of_one_journal_apply_each_row_once(
    server: ThreadedSandbox, tmp_path: Path, kind: str
) -> None:
    result = race(server, tmp_path / kind.replace(" ", "-"), kind)
    print(result)
    assert result.tally.exactly_once, result
    assert result.posts == ROUND_ROWS, result  # each row sent once, by one of them


def test_ten_rounds_of_two_processes_through_two_names(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    kinds = ["symlink", "bind mount"] if os.geteuid() == 0 else ["symlink"]
    results = []
    for n in range(ROUNDS):
        kind = kinds[n % len(kinds)]
        result = race(server, tmp_path / f"round{n}", kind)
        print(f"round {n}: {result}")
        results.append(result)
    twice = sum(r.tally.twice for r in results)
    lost = sum(r.tally.lost for r in results)
    locked_out = sum(r.codes.count(2) for r in results)
    print(
        f"{ROUNDS} rounds ({', '.join(kinds)}): rows {ROUNDS * ROUND_ROWS}, credits "
        f"{sum(r.tally.credits for r in results)}, POSTs {sum(r.posts for r in results)}, "
        f"applied twice {twice}, lost {lost}, second process locked out {locked_out} times"
    )
    for n, result in enumerate(results):
        assert result.tally.exactly_once, f"round {n}: {result}"
        assert result.posts == ROUND_ROWS, f"round {n}: {result}"


def kill_at(proc: subprocess.Popen[bytes], counter: PostCounter) -> None:
    """SIGKILL ``proc`` as soon as ``counter`` is reached (it must be, before it ends)."""
    deadline = time.monotonic() + DEADLINE
    while proc.poll() is None and time.monotonic() < deadline:
        if counter.reached.wait(0.005):
            proc.kill()
            break
    assert proc.wait(DEADLINE) == -signal.SIGKILL
    assert counter.reached.is_set()


def test_a_hard_link_to_a_killed_runs_journal_is_refused_until_removed(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    # Through a second name SQLite would not see the killed run's write-ahead log: the
    # journal would look new and, untagged, every row would be sent again.
    rows = 300
    batch = make_batch(tmp_path, "linked", rows=rows, members=60)
    (tmp_path / "own").mkdir()
    (tmp_path / "other").mkdir()
    journal, link = tmp_path / "own" / "journal.sqlite", tmp_path / "other" / "link.sqlite"
    half = PostCounter(rows // 2)
    observe_posts(server, half)
    server.call(setattr, server.sandbox, "latency", LATENCY)
    argv = apply_argv(batch, journal, "--no-tag-notes")
    with spawned(argv, tmp_path / "first", env=env_for(server)) as proc:
        kill_at(proc, half)
    server.call(setattr, server.sandbox, "latency", 0.0)
    wait_until_idle(server)
    first = tally(server, batch)
    os.link(journal, link)
    before = len(server.requests())
    for name in (link, journal):
        argv = apply_argv(batch, name, "--no-tag-notes", "--settle", SETTLE)
        with spawned(argv, tmp_path / f"refused-{name.parent.name}", env=env_for(server)) as proc:
            code = proc.wait(DEADLINE)
        _, err = output_of(tmp_path / f"refused-{name.parent.name}")
        assert code == 2, err
        assert "2 hard links" in err, err
        assert "Traceback" not in err, err
    assert server.requests()[before:] == []  # refused before anything was sent or read
    link.unlink()
    # Rows marked before their POST left when the kill came are found not applied, and
    # re-sent: what docs/bulk.md tells a user to do after a kill without tags.
    argv = apply_argv(batch, journal, "--no-tag-notes", "--settle", SETTLE, "--resend-unconfirmed")
    with spawned(argv, tmp_path / "second", env=env_for(server)) as proc:
        code = proc.wait(DEADLINE)
    final = tally(server, batch)
    print(
        f"hard link after SIGKILL (untagged): applied before the kill {first.credits}; "
        f"both names refused while linked; after unlinking: exit {code}, {final}"
    )
    assert code == 0, output_of(tmp_path / "second")
    assert final.exactly_once, final
    journal_shows(journal, {"applied": rows})


# --- 2. the wall clock steps forward mid-run ---------------------------------------------


SITECUSTOMIZE = '''\
"""Steps this process's wall clock (time.time) an hour forward once MARKER exists."""
import os
import time

_marker = os.environ["CLOCK_STEP_MARKER"]
_real_time = time.time


def _stepped_time():
    now = _real_time()
    return now + 3600.0 if os.path.exists(_marker) else now


time.time = _stepped_time
with open(os.environ["CLOCK_STEP_LOADED"], "a") as _loaded:
    _loaded.write(f"{os.getpid()}\\n")
'''


def test_a_wall_clock_step_ends_no_settle_window(server: ThreadedSandbox, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    marker, loaded = tmp_path / "clock-stepped", tmp_path / "sitecustomize-loaded"
    batch = make_batch(tmp_path, "clock", rows=1, members=1)
    journal = tmp_path / "clock.sqlite"
    # The sandbox (this process, a clock that does not step) shows a write 1.5 s late.
    server.call(setattr, server.sandbox, "visibility_delay", 1.5)

    def step_the_clock(request: RecordedRequest) -> bool:
        marker.touch()  # before the answer leaves
        return True

    # The POST is applied, answered 500, and the child's wall clock is an hour later.
    server.call(server.sandbox.fail_next, 500, method="POST", apply=True, match=step_the_clock)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    env = env_for(
        server,
        PYTHONPATH=path,
        CLOCK_STEP_MARKER=str(marker),
        CLOCK_STEP_LOADED=str(loaded),
    )
    argv = apply_argv(batch, journal, "--settle", "10", "--resend-unconfirmed")
    with spawned(argv, tmp_path / "logs", env=env) as proc:
        code = proc.wait(DEADLINE)
    _, err = output_of(tmp_path / "logs")
    assert loaded.read_text(encoding="utf-8").split() == [str(proc.pid)]  # it was stepped
    assert marker.exists()
    result = tally(server, batch)
    figures = f"clock step: {result}, POSTs {len(posts(server))}, exit {code}"
    print(figures)
    # The old code: the window was over at once, not applied, re-sent: 2 credits.
    assert result.exactly_once, figures
    assert len(posts(server)) == 1, figures
    assert code == 0, err
    journal_shows(journal, {"applied": 1})


# --- 3. the disk holding the journal fills up mid-run ------------------------------------


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root")


def mount(*args: str) -> None:
    """Run ``mount``; skip the test, with its reason, if it cannot."""
    found = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} failed: {found.stderr.strip()}")


def umount(target: Path) -> None:
    for _ in range(50):
        if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode:
            time.sleep(0.1)  # still busy: a child that is being reaped
        if not os.path.ismount(target):
            return
    subprocess.run(["umount", "-l", str(target)], check=False)


class FillDisk:
    """At the ``count``-th POST (observing only), a file fills the disk to the last byte."""

    def __init__(self, count: int, filler: Path) -> None:
        self.counter = PostCounter(count)
        self.filler = filler
        self.filled = 0

    def __call__(self, request: RecordedRequest) -> bool:
        self.counter(request)
        if self.counter.seen == self.counter.count:
            fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                for size in (65536, 4096, 512, 1):
                    block = b"\0" * size
                    with suppress(OSError):
                        while True:
                            self.filled += os.write(fd, block)
            finally:
                os.close(fd)
        return False


def test_a_full_disk_exits_3_with_the_real_cause_and_a_rerun_finishes_once(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    require_root("mounting a small tmpfs")
    small = tmp_path / "small"
    small.mkdir()
    mount("-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(small))
    try:
        batch = make_batch(tmp_path, "full", rows=200, members=40)
        journal = small / "full.sqlite"
        fill = FillDisk(20, small / "filler")
        server.call(server.sandbox.fail_next, method="POST", times=10**9, match=fill)
        with spawned(apply_argv(batch, journal), tmp_path / "logs", env=env_for(server)) as proc:
            code = proc.wait(DEADLINE)
        _, err = output_of(tmp_path / "logs")
        wait_until_idle(server)
        sent, first = len(posts(server)), tally(server, batch)
        print(f"disk full: exit {code}, POSTs before it stopped {sent}, {first}")
        assert fill.filled > 0, "the disk was never filled"
        assert code == 3, err
        assert "database or disk is full" in err, err
        assert "cannot rollback" not in err, err
        assert "Traceback" not in err, err
        assert 20 <= sent < len(batch.rows), err
        assert first.twice == 0, first
        os.remove(small / "filler")
        before = len(server.requests())
        rerun(server, batch, journal, "--settle", SETTLE, "--resend-unconfirmed")
        final = tally(server, batch)
        again = len(posts(server, before))
        print(f"disk full, re-run with space: POSTs {again}, {final}")
        assert final.exactly_once, final
        assert again == len(batch.rows) - first.credits, final
        journal_shows(journal, {"applied": len(batch.rows)})
    finally:
        umount(small)


# --- 4. a journal that cannot be written is still read -----------------------------------


def made_journal(server: ThreadedSandbox, tmp_path: Path) -> tuple[Batch, Path]:
    """A journal left by a real, finished run (its -wal and -shm gone with the run)."""
    batch = make_batch(tmp_path, "ro", rows=30, members=6)
    journal = tmp_path / "ro.sqlite"
    with spawned(apply_argv(batch, journal), tmp_path / "run", env=env_for(server)) as proc:
        assert proc.wait(DEADLINE) == 0, output_of(tmp_path / "run")
    assert tally(server, batch).exactly_once
    assert not Path(f"{journal}-wal").exists()
    return batch, journal


def unprivileged(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """``argv`` run so that only the permission bits let it write: as user 65534 if that
    user can run this Python, else as root without any capability (owner bits apply)."""
    if os.geteuid() != 0:
        return argv, {}
    as_nobody: dict[str, Any] = {"user": 65534, "group": 65534, "extra_groups": []}
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import inveterate_async"],
            capture_output=True,
            check=False,
            **as_nobody,
        )
    except PermissionError:
        pass  # this Python is where user 65534 cannot reach it
    else:
        if probe.returncode == 0:
            return argv, as_nobody
    if shutil.which("setpriv") is None:
        pytest.skip("neither user 65534 nor setpriv can run this Python without privileges")
    drop = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return [*drop, *argv], {}


PROBE = """\
import os, sys
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as error:
        print("refused", error.errno)
    else:
        print("written")
"""


def plain_env() -> dict[str, str]:
    """A child's environment without this test run's coverage (it would write files)."""
    return {k: v for k, v in child_env().items() if not k.startswith(("COV_", "COVERAGE_"))}


def test_credits_journal_reads_a_copy_it_cannot_write(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    _, journal = made_journal(server, tmp_path)
    directory = Path(tempfile.mkdtemp(prefix="inveterate-ro-"))
    try:
        copy = directory / "copy.sqlite"
        shutil.copyfile(journal, copy)
        copy.chmod(0o444)
        directory.chmod(0o555)
        probe, how = unprivileged([sys.executable, "-c", PROBE, str(copy), str(directory / "x")])
        checked = subprocess.run(
            probe, capture_output=True, text=True, env=plain_env(), check=False, **how
        )
        assert checked.stdout.split("\n")[:2] == [
            f"refused {errno.EACCES}",
            f"refused {errno.EACCES}",
        ], checked
        argv, how = unprivileged(cli("credits", "journal", str(copy)))
        shown = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=plain_env(),
            check=False,
            timeout=DEADLINE,
            **how,
        )
        print(
            f"read-only copy ({'setpriv' if argv[0] == 'setpriv' else 'user'}): exit "
            f"{shown.returncode}"
        )
        assert shown.returncode == 0, shown.stderr
        assert re.search(r"^applied\s+30\s", shown.stdout, re.MULTILINE), shown.stdout
        assert "Traceback" not in shown.stderr
        assert sorted(os.listdir(directory)) == ["copy.sqlite"]
    finally:
        directory.chmod(0o755)
        shutil.rmtree(directory)


def test_credits_journal_reads_a_journal_on_a_read_only_mount(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    require_root("a bind mount")
    _, journal = made_journal(server, tmp_path)
    source, view = tmp_path / "source", tmp_path / "view"
    source.mkdir()
    view.mkdir()
    shutil.copyfile(journal, source / "journal.sqlite")
    mount("--bind", str(source), str(view))
    try:
        mount("-o", "remount,ro,bind", str(view))
        with pytest.raises(OSError, match="Read-only file system"):
            os.open(view / "journal.sqlite", os.O_WRONLY)
        shown = subprocess.run(
            cli("credits", "journal", str(view / "journal.sqlite")),
            capture_output=True,
            text=True,
            env=child_env(),
            check=False,
            timeout=DEADLINE,
        )
        print(f"read-only bind mount: exit {shown.returncode}")
        assert shown.returncode == 0, shown.stderr
        assert re.search(r"^applied\s+30\s", shown.stdout, re.MULTILINE), shown.stdout
        assert "Traceback" not in shown.stderr
        assert sorted(os.listdir(source)) == ["journal.sqlite"]
    finally:
        umount(view)


# --- 5. SIGKILL mid-run, then a new journal ----------------------------------------------


def test_sigkill_then_a_new_journal_sends_only_what_the_ledger_lacks(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    rows = 300
    batch = make_batch(tmp_path, "killed", rows=rows, members=60)
    journal = tmp_path / "first.sqlite"
    half = PostCounter(rows // 2)
    observe_posts(server, half)
    server.call(setattr, server.sandbox, "latency", LATENCY)
    argv = apply_argv(batch, journal, "--concurrency", "8")
    with spawned(argv, tmp_path / "first", env=env_for(server)) as proc:
        kill_at(proc, half)
    server.call(setattr, server.sandbox, "latency", 0.0)
    wait_until_idle(server)
    for suffix in ("", "-wal", "-shm"):
        with suppress(FileNotFoundError):
            os.remove(f"{journal}{suffix}")
    first = tally(server, batch)
    assert first.twice == 0, first
    assert 0 < first.credits < rows, first
    before = len(server.requests())
    second_journal = tmp_path / "second.sqlite"
    with spawned(
        apply_argv(batch, second_journal, "--concurrency", "8"),
        tmp_path / "second",
        env=env_for(server),
    ) as proc:
        code = proc.wait(DEADLINE)
    assert code == 0, output_of(tmp_path / "second")
    final = tally(server, batch)
    second_posts = posts(server, before)
    figures = (
        f"SIGKILL + new journal: applied before the kill {first.credits}, POSTs of the second "
        f"run {len(second_posts)}, {final}"
    )
    print(figures)
    assert final.exactly_once, figures
    assert len(second_posts) == rows - first.credits, figures
    every_post = posted_refs(posts(server))
    assert sorted(every_post) == sorted(batch.rows), figures  # each ref sent exactly once
    journal_shows(second_journal, {"applied": rows})


# --- 6. the key is refused mid-batch -----------------------------------------------------


class Revoked:
    """A ``fail_next`` match: every request after the first ``after`` POSTs, while on."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.posts = 0
        self.on = True

    def __call__(self, request: RecordedRequest) -> bool:
        if not self.on:
            return False
        if request.method == "POST":
            self.posts += 1
        return self.posts > self.after


def test_a_key_refused_mid_batch_exits_4_leaves_the_rest_pending_and_a_rerun_finishes(
    server: ThreadedSandbox, tmp_path: Path
) -> None:
    rows, after = 200, 60
    batch = make_batch(tmp_path, "revoked", rows=rows, members=40)
    journal = tmp_path / "revoked.sqlite"
    revoked = Revoked(after)
    body = {"message": "Unauthorized: the API key was revoked", "data": {}}
    server.call(server.sandbox.fail_next, 401, times=10**9, body=body, match=revoked)
    argv = apply_argv(batch, journal, "--concurrency", "8")
    with spawned(argv, tmp_path / "logs", env=env_for(server)) as proc:
        code = proc.wait(DEADLINE)
    _, err = output_of(tmp_path / "logs")
    wait_until_idle(server)
    first = tally(server, batch)
    refused = len(posts(server)) - after
    print(f"key refused: exit {code}, applied {first.credits}, POSTs refused {refused}")
    assert code == 4, err
    assert "refused the key" in err, err
    assert "Traceback" not in err
    assert first.credits == after, first
    assert first.twice == 0, first
    journal_shows(journal, {"applied": after, "pending": rows - after}, code=1)
    server.call(setattr, revoked, "on", False)
    before = len(server.requests())
    rerun(server, batch, journal, "--concurrency", "8")
    final = tally(server, batch)
    again = len(posts(server, before))
    print(f"key refused, re-run with the key accepted: POSTs {again}, {final}")
    assert final.exactly_once, final
    assert again == rows - after, final
    journal_shows(journal, {"applied": rows})
