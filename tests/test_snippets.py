"""The snippet runner itself (tests/snippets.py): what passes, what fails, and how."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from unittest import SkipTest

from sybil import Document, Sybil
from sybil.example import SybilFailure

from .snippets import guides_sybil, readme_sybil

FENCE = "```"


def python(code: str) -> str:
    return f"{FENCE}python\n{code.strip()}\n{FENCE}\n"


def run_page(sybil: Sybil, path: Path, text: str) -> Iterator[Exception | None]:
    """Evaluate each block of a page in order, as pytest would; yield what each raised."""
    path.write_text(text)
    document: Document = sybil.parse(path)
    assert sybil.setup is not None
    assert sybil.teardown is not None
    sybil.setup(document.namespace)
    try:
        for example in document.examples():
            try:
                example.evaluate()
            except (SybilFailure, SkipTest) as exc:
                yield exc
            else:
                yield None
    finally:
        sybil.teardown(document.namespace)


def test_guide_blocks_share_a_namespace_and_await_at_top_level(tmp_path: Path) -> None:
    page = python('page = await client.get_credits_page("42", limit=2)') + python(
        "assert len(page.credits) == 2 and page.next_cursor is not None"
    )
    assert list(run_page(guides_sybil(), tmp_path / "guide.md", page)) == [None, None]


def test_readme_blocks_must_be_complete_programs(tmp_path: Path) -> None:
    page = python('await client.get_credits_page("42")') + python(
        """
import asyncio
from inveterate_async import InveterateClient

async def main():
    async with InveterateClient() as client:
        return await client.get_credits_page("42")

assert len(asyncio.run(main()).credits) == 5
"""
    )
    (outside, program) = run_page(readme_sybil(), tmp_path / "README.md", page)
    assert isinstance(outside, SybilFailure)
    assert "SyntaxError: 'await' outside function" in str(outside)
    assert program is None


def test_a_failing_block_reports_its_traceback(tmp_path: Path) -> None:
    (failure,) = run_page(guides_sybil(), tmp_path / "g.md", python("print(member_ids)"))
    assert isinstance(failure, SybilFailure)
    assert "NameError: name 'member_ids' is not defined" in str(failure)
    assert 'g.md", line 2' in str(failure)


def test_skip_needs_no_evaluation_and_reports_its_reason(tmp_path: Path) -> None:
    page = '<!-- skip: next "needs a real API key" -->\n\n' + python("raise SystemExit(1)")
    (directive, skipped) = run_page(guides_sybil(), tmp_path / "g.md", page)
    assert directive is None
    assert isinstance(skipped, SkipTest)
    assert str(skipped) == "needs a real API key"


def test_a_block_with_tests_runs_them_in_pytest(tmp_path: Path) -> None:
    passing = python(
        """
from decimal import Decimal
import pytest
from inveterate_async.testing import Sandbox

@pytest.mark.asyncio
async def test_sandbox_balance():
    async with Sandbox() as sandbox:
        sandbox.add_credits("1", ["1.50"])
        assert sandbox.balance("1") == Decimal("1.50")

def test_plain():
    assert True
"""
    )
    failing = python("def test_wrong():\n    assert 1 == 2")
    (ok, failed) = run_page(guides_sybil(), tmp_path / "t.md", passing + failing)
    assert ok is None
    assert isinstance(failed, SybilFailure)
    assert "1 failed" in str(failed)
    assert "assert 1 == 2" in str(failed)


def test_a_block_with_tests_must_pass_in_pytest_asyncios_strict_mode_too(tmp_path: Path) -> None:
    # An unmarked async test passes in auto mode only: a reader on the default fails.
    unmarked = python("async def test_unmarked():\n    assert True")
    (failed,) = run_page(guides_sybil(), tmp_path / "t.md", unmarked)
    assert isinstance(failed, SybilFailure)
    assert "(strict mode)" in str(failed)


def test_a_page_gets_its_own_sandbox_environment_and_directory(tmp_path: Path) -> None:
    before = (os.getcwd(), os.environ.get("INVETERATE_BASE_URL"))
    page = python(
        """
import os
from pathlib import Path
Path("written.txt").write_text("x")
where = os.getcwd()
url = os.environ["INVETERATE_BASE_URL"]
"""
    )
    sybil = guides_sybil()
    path = tmp_path / "g.md"
    path.write_text(page)
    document = sybil.parse(path)
    assert sybil.setup is not None
    assert sybil.teardown is not None
    sybil.setup(document.namespace)
    try:
        (example,) = document.examples()
        example.evaluate()
    finally:
        sybil.teardown(document.namespace)
    assert document.namespace["url"].startswith("http://127.0.0.1:")
    assert not Path(document.namespace["where"], "written.txt").exists()
    assert (os.getcwd(), os.environ.get("INVETERATE_BASE_URL")) == before


def test_the_collected_pages() -> None:
    root = Path(__file__).resolve().parent.parent
    readme, guides = readme_sybil(), guides_sybil()
    assert readme.should_parse(root / "README.md")
    assert not readme.should_parse(root / "docs" / "errors.md")
    assert guides.should_parse(root / "docs" / "errors.md")
    assert not guides.should_parse(root / "README.md")
    assert not guides.should_parse(root / "docs" / "reference" / "api.md")
