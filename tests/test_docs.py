"""The documentation's own rules: every public name is in the API reference, every Python
block is one the snippet runner collects, and every skipped block says why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import inveterate_async
import inveterate_async.testing

from .snippets import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
API_PAGE = ROOT / "docs" / "reference" / "api.md"
DOCUMENTED = re.compile(
    r"^\s*\.\. (?:auto(?:class|exception|function|data)|py:data)::\s+([\w.]+)", re.MULTILINE
)
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^\s`]*)", re.MULTILINE)
SKIP = re.compile(r"<!--+\s*skip:\s*(\w+)(.*?)-->", re.DOTALL)


def test_every_public_name_is_in_the_api_reference() -> None:
    documented = set(DOCUMENTED.findall(API_PAGE.read_text()))
    public = {f"inveterate_async.{name}" for name in inveterate_async.__all__}
    public |= {f"inveterate_async.testing.{name}" for name in inveterate_async.testing.__all__}
    assert public - documented == set(), "add them to docs/reference/api.md"
    assert documented - public == set(), "documented but not public"


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_python_blocks_are_spelled_so_that_they_run(page: Path) -> None:
    languages = {language for _, language in FENCE.findall(page.read_text())}
    assert languages & {"py", "python3", "pycon", "py3", "Python"} == set(), (
        "spell Python blocks ```python: other spellings are not run by the snippet tests"
    )


def skips_without_reason(text: str) -> list[str]:
    """The ``skip`` directives of a page that give no quoted reason."""
    return [
        f"skip: {action}{reason}"
        for action, reason in SKIP.findall(text)
        if action != "end" and not re.fullmatch(r"\s*([\"']).+\1\s*", reason)
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.name)
def test_every_skipped_block_says_why(page: Path) -> None:
    assert skips_without_reason(page.read_text()) == [], (
        'give each skip a reason, e.g. <!-- skip: next "needs a real API key" -->'
    )


def test_a_skip_without_a_reason_is_found() -> None:
    text = """
<!-- skip: next -->
<!-- skip: start "needs a real key" -->
<!-- skip: end -->
<!-- skip: next '' -->
"""
    assert skips_without_reason(text) == ["skip: next ", "skip: next '' "]
