"""Runnable examples of the SDK in applications; their tests are in ``tests/``."""
