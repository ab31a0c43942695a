"""Collects the Python snippets of README.md and docs/*.md as tests (see tests/snippets.py)."""

from tests.snippets import collector

pytest_collect_file = collector()
