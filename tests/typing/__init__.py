"""Typing checks of the public API, used as users use it; checked, never run.

``mypy --strict inveterate_async tests benchmarks`` (in ``.ci/run``) checks these
files. They are not pytest tests (no ``test_`` prefix) and nothing runs at import:
every use sits inside a function. ``assert_type`` fails the check when an inferred
type changes; a ``# type: ignore[code]`` marks a call that must stay a type error
(``--strict`` reports an ignore that is no longer needed, so a signature that starts
accepting, say, a float amount fails the check).
"""
