"""The resume walkthroughs of docs/pagination.md and docs/cli.md, run as written.

Blocks are found by their ``<!-- walkthrough: NAME -->`` marker. The only changes made to
the commands: the port 8080 becomes a free one, ``inveterate`` and ``python`` this Python,
and the files live in a temporary directory. The "stop it part-way" of the docs is a real
signal sent once the output has grown, never after a sleep.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from .cli_support import cli, free_port, output_of, spawned, wait_until

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


def fenced_blocks(doc: str, marker: str) -> list[str]:
    """The contents of the fenced blocks after ``<!-- marker -->`` in ``docs/doc``, up to the
    next heading."""
    lines = (ROOT / "docs" / doc).read_text(encoding="utf-8").splitlines(keepends=True)
    start = lines.index(f"<!-- {marker} -->\n")
    blocks: list[str] = []
    current: list[str] | None = None
    for line in lines[start + 1 :]:
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
        elif line.startswith("#"):
            break
    return blocks


def blocks_after(doc: str, name: str) -> list[str]:
    return fenced_blocks(doc, f"walkthrough: {name}")


def output_block(doc: str, name: str) -> str:
    return fenced_blocks(doc, f"output: {name}")[0]


class Shell:
    """Runs the lines of a walkthrough: ``export`` sets variables, the rest are commands."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.env = {"PATH": "/usr/bin:/bin", "COLUMNS": "100"}

    def words(self, line: str) -> list[str]:
        line = line.replace("8080", str(self.port))
        words = shlex.split(line)
        if words[0] == "inveterate":
            return cli(*words[1:])
        if words[0] == "python":
            return [sys.executable, str(ROOT / words[1]), *words[2:]]
        return words

    def run(self, line: str) -> None:
        """``export`` a variable, or run a shell command (``seq 1 9 > file``) to its end."""
        line = line.replace("8080", str(self.port))
        if line.startswith("export "):
            for assignment in shlex.split(line)[1:]:
                name, value = assignment.split("=", 1)
                self.env[name] = value
            return
        subprocess.run(["bash", "-c", line], cwd=self.workdir, env=self.env, check=True)

    @contextmanager
    def serving(self, line: str) -> Iterator[None]:
        """Run ``inveterate sandbox ...`` until the block ends (waiting until it answers)."""
        logs = self.workdir / "sandbox"
        with spawned(self.words(line), logs, env=self.env):
            wait_until(lambda: "base URL:" in output_of(logs)[0], what="the sandbox")
            yield

    def spawn(self, line: str, logs: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
        """The command of ``line``, its output in the directory ``logs``."""
        return spawned(self.words(line), self.workdir / logs, env=self.env, cwd=self.workdir)

    def text(self, name: str) -> str:
        return (self.workdir / name).read_text(encoding="utf-8")

    def stderr(self, logs: str) -> str:
        return output_of(self.workdir / logs)[1]


def commands(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_one_ledger_walkthrough_prints_what_the_docs_show() -> None:
    program = blocks_after("pagination.md", "resume-one-ledger")[0]

    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )

    assert result.stdout == output_block("pagination.md", "resume-one-ledger")
    assert result.stderr == ""


def run_interrupted_then_again(
    shell: Shell, first: str, again: str, *, grown: Path, signum: signal.Signals
) -> tuple[int, str]:
    """Run ``first``, signal it once ``grown`` has some content, then run ``again`` to its end."""
    with shell.spawn(first, "first") as proc:
        wait_until(
            lambda: (grown.exists() and grown.stat().st_size > 2000) or proc.poll() is not None,
            what=f"{grown.name} to grow",
        )
        proc.send_signal(signum)
        code = proc.wait(timeout=30)
    with shell.spawn(again, "again") as proc:
        assert proc.wait(timeout=120) == 0, shell.stderr("again")
    return code, shell.stderr("first")


def test_the_cli_export_walkthrough_resumes_to_the_file_of_an_uninterrupted_export(
    tmp_path: Path,
) -> None:
    serve, rest = blocks_after("cli.md", "cli-export-resume")
    setup, ids, first, again = commands(rest)
    assert first == again  # the docs' point: the same command resumes
    shell = Shell(tmp_path, free_port())

    with shell.serving(serve.strip()):
        shell.run(setup)
        shell.run(ids)
        code, stopped = run_interrupted_then_again(
            shell, first, again, grown=tmp_path / ".all.csv.partial", signum=signal.SIGINT
        )
        clean = [*first.replace("all.", "clean.").split(), "--force"]
        subprocess.run(shell.words(" ".join(clean)), cwd=tmp_path, env=shell.env, check=True)

    assert code == 130
    assert stopped.startswith("interrupted: ")
    assert stopped.splitlines()[-1].endswith(first.replace("inveterate credits export", ""))
    resumed, exported = shell.stderr("again").splitlines()
    assert re.fullmatch(
        r"resumed from all\.state: \d+ credits? of \d+ members? were saved by an earlier run",
        resumed,
    )
    assert exported.startswith("exported 1000 credits of 200 members to all.csv")
    assert (tmp_path / "all.csv").read_bytes() == (tmp_path / "clean.csv").read_bytes()
    assert not (tmp_path / "all.state").exists()


def test_the_worker_walkthrough_survives_kill_9(tmp_path: Path) -> None:
    serve, rest = blocks_after("pagination.md", "worker-kill-9")
    setup, ids, first, again = commands(rest)
    assert first == again
    shell = Shell(tmp_path, free_port())

    with shell.serving(serve.strip()):
        shell.run(setup)
        shell.run(ids)
        code, _ = run_interrupted_then_again(
            shell, first, again, grown=tmp_path / "credits.jsonl", signum=signal.SIGKILL
        )

    assert code == -signal.SIGKILL
    assert shell.stderr("again") == "done: 100 members exported, 0 failed\n"
    lines = shell.text("credits.jsonl").splitlines()
    assert len(lines) == len(set(lines)) == 500
