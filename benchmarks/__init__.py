"""Benchmark suite: the inveterate_async SDK against a hand-written aiohttp client.

Run ``python -m benchmarks --help``. A local server (``_server``) serves pre-rendered credit
pages from its own process; every client round runs in a fresh subprocess (``_child``) that
reports wall time, CPU time, peak RSS and a checksum of what it fetched.
"""
