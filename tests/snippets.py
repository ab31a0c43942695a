"""Every ```python block of README.md and docs/*.md runs as a test, against a Sandbox.

Collected by the repository's root ``conftest.py`` with Sybil. The blocks of one page
run in order and share one namespace, like cells of a notebook:

- Each page gets a fresh :class:`~inveterate_async.testing.Sandbox`, served from a
  thread, with members ``1``..``100`` seeded (5 credits each), and
  ``INVETERATE_API_KEY`` / ``INVETERATE_BASE_URL`` pointing at it: a snippet that builds
  ``InveterateClient()`` from the environment, as the README does, talks to it.
- README.md's blocks are complete programs: they run as plain Python, as a user who
  copies one into a file would run it (no top-level ``await``, nothing predefined).
- The guides' blocks may use top-level ``await``, ``async for`` and ``async with`` (as
  in ``python -m asyncio``), and the name ``client``: an ``InveterateClient()`` made from
  the environment. Complete programs (``asyncio.run(main())``) run as they are.
- A block that defines ``test_*`` functions is a test file: it is written to a temporary
  directory and run by pytest in a subprocess, in pytest-asyncio's strict mode (its
  default) and in auto mode, and every test in it must pass both times.
- A block that cannot run as shown is preceded by ``<!-- skip: next "why" -->``; the
  reason is required (``tests/test_docs.py`` checks it) and shows in pytest's report.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sybil import Example, Sybil
from sybil.evaluators.python import pad
from sybil.example import SybilFailure
from sybil.parsers.myst import CodeBlockParser, SkipParser

from inveterate_async import InveterateClient
from inveterate_async.testing import Sandbox

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk_docs_snippets"
SEEDED_MEMBERS = 100
# A test-file snippet has this long to run in its own pytest process.
TEST_FILE_TIMEOUT = 300

_RESOURCES = "__snippet_resources__"
_LOOP = "__snippet_loop__"

PYTEST_INI = textwrap.dedent(
    """\
    [pytest]
    asyncio_mode = {mode}
    asyncio_default_fixture_loop_scope = function
    filterwarnings = error
    """
)
ASYNCIO_MODES = ("strict", "auto")


def test_functions(tree: ast.Module) -> list[str]:
    """The names of the top-level ``test_*`` functions a snippet defines."""
    return [
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    ]


def run_as_test_file(example: Example, source: str, tests: list[str]) -> None:
    """Run ``source`` with pytest in a subprocess, in each of :data:`ASYNCIO_MODES`; every
    one of ``tests`` must pass."""
    for mode in ASYNCIO_MODES:
        _run_tests(example, source, tests, mode)


def _run_tests(example: Example, source: str, tests: list[str], mode: str) -> None:
    name = f"{Path(example.path).stem}_line{example.line}"
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "pytest.ini").write_text(PYTEST_INI.format(mode=mode))
        path = Path(directory, f"test_{name}.py")
        path.write_text(source)
        # The examples package is imported the way a checkout's tests import it.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
        process = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path.name],
            cwd=directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=TEST_FILE_TIMEOUT,
            check=False,
        )
    report = process.stdout + process.stderr
    if process.returncode != 0 or f"{len(tests)} passed" not in report:
        raise SybilFailure(
            example, f"expected {len(tests)} passing tests {tests} ({mode} mode):\n{report}"
        )


def evaluate_program(example: Example) -> None:
    """Run a README block: a test file, or plain Python (no top-level await)."""
    _evaluate(example, flags=0)


def evaluate_guide(example: Example) -> None:
    """Run a guide's block: a test file, or notebook-style code with top-level await."""
    _evaluate(example, flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _evaluate(example: Example, flags: int) -> None:
    source = str(example.parsed)
    padded = pad(source, example.line + example.parsed.line_offset)
    namespace = example.namespace
    try:
        tests = test_functions(ast.parse(padded, example.path))
        if tests:
            run_as_test_file(example, source, tests)
            return
        code = compile(padded, example.path, "exec", flags=flags, dont_inherit=True)
        result = eval(code, namespace)
        if result is not None:  # a coroutine: the block has a top-level await
            namespace[_LOOP].run_until_complete(result)
    except Exception as exc:
        # Reported as text: Sybil's traceback filter cannot show chained exceptions.
        raise SybilFailure(example, "".join(traceback.format_exception(exc))) from None
    finally:
        namespace.pop("__builtins__", None)


@contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _logging_restored() -> Iterator[None]:
    """Logging set up by a snippet (levels, root handlers) is undone after its page."""
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    try:
        yield
    finally:
        root.handlers[:] = handlers
        for name, logger in logging.root.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                logger.setLevel(levels.get(name, logging.NOTSET))
        root.setLevel(root_level)


@contextmanager
def _scratch_directory() -> Iterator[None]:
    """Files a snippet writes (an export, a database) go to a directory of its own."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as directory:
        os.chdir(directory)
        try:
            yield
        finally:
            os.chdir(previous)


def setup_program(namespace: dict[str, Any]) -> None:
    """A README page's world: its own sandbox, environment and working directory."""
    resources = ExitStack()
    _serve_sandbox(resources)
    namespace.update({_RESOURCES: resources, "__name__": "__main__"})


def setup_guide(namespace: dict[str, Any]) -> None:
    """A guide's world: its own sandbox, environment, working directory, event loop and
    ``client``."""
    resources = ExitStack()
    _serve_sandbox(resources)
    loop = asyncio.new_event_loop()
    client = InveterateClient()
    resources.callback(loop.close)
    resources.callback(lambda: loop.run_until_complete(client.aclose()))
    namespace.update({_RESOURCES: resources, _LOOP: loop, "__name__": "__main__"})
    namespace["client"] = client


def _serve_sandbox(resources: ExitStack) -> None:
    resources.enter_context(_scratch_directory())
    resources.enter_context(_logging_restored())
    sandbox = resources.enter_context(Sandbox(api_key=API_KEY).start_in_thread())
    sandbox.seed_members(SEEDED_MEMBERS)
    resources.enter_context(
        _environment(
            INVETERATE_API_KEY=API_KEY,
            INVETERATE_BASE_URL=sandbox.base_url,
            INVETERATE_ALLOW_INSECURE_HTTP=None,
        )
    )


def teardown_page(namespace: dict[str, Any]) -> None:
    namespace[_RESOURCES].close()


def readme_sybil() -> Sybil:
    """README.md: complete programs."""
    return Sybil(
        parsers=[CodeBlockParser(language="python", evaluator=evaluate_program), SkipParser()],
        path=str(ROOT),
        filenames=["README.md"],
        excludes=["docs/*"],
        setup=setup_program,
        teardown=teardown_page,
    )


def guides_sybil() -> Sybil:
    """docs/*.md: notebook-style blocks with top-level await and ``client``."""
    return Sybil(
        parsers=[CodeBlockParser(language="python", evaluator=evaluate_guide), SkipParser()],
        path=str(ROOT),
        patterns=["docs/*.md"],
        setup=setup_guide,
        teardown=teardown_page,
    )


def collector() -> Callable[[Path, Any], Any]:
    """The ``pytest_collect_file`` hook for README.md and docs/*.md."""
    return (readme_sybil() + guides_sybil()).pytest()
