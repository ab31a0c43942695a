"""The cluster's names, timings, broker connection and JSON job serialisation."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

QUEUE_NAME = "inveterate:export"
"""The arq queue of the export shards (kept apart from an application's other jobs)."""

JOB_FUNCTION = "inveterate_export_shard"
"""The name the shard job is enqueued under."""

DEFAULT_JOB_TIMEOUT = 20.0
"""Seconds one run of a shard job may last (arq's ``job_timeout``).

A run stops reading at :data:`SLICE_FRACTION` of it, keeps what it read and is queued
again, so a shard of any size fits. A killed worker's shard is run again once its
in-progress lock expires: :func:`recovery_seconds` of the timeout (30 s by default).
"""

SLICE_FRACTION = 0.6
LOCK_FACTOR = 1.5

DEFAULT_SHARD_SIZE = 200
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_JOBS = 2

KEEP_RESULT = timedelta(days=7)
"""How long finished shards' results (and the exports' records) stay in the broker."""

MAX_TRIES = 10_000
"""arq's cap on runs of one shard: high, because a long shard takes one run per slice.
Shards that stop making progress are failed by :data:`MAX_STALLED_RUNS` instead."""

MAX_STALLED_RUNS = 5
"""Runs in a row that read nothing before a shard is failed."""

EXPORTS_KEY = "inveterate:exports"
"""Redis hash: export id -> JSON record, for ``inveterate cluster status``."""

WORKER_REDIS_RETRIES = 30
"""Retries of a worker's broker commands: enough for a broker restart or a failover
(about a minute), not so long that a broker gone for good goes unnoticed."""
COMMAND_REDIS_RETRIES = 2
"""Retries of a short-lived command's (``export``, ``status``): a wrong URL fails fast."""
BROKER_PATIENCE = 120.0
"""Seconds the producer keeps waiting for a broker that does not answer."""

_REDIS_BACKOFF_CAP = 2.0
_REDIS_BACKOFF_BASE = 0.05


def recovery_seconds(job_timeout: float) -> float:
    """How long a shard held by a killed worker waits before another worker runs it.

    :param job_timeout: the worker's ``job_timeout`` in seconds.
    :returns: seconds (1.5 x ``job_timeout`` with :class:`ClusterWorker`).
    """
    return job_timeout * LOCK_FACTOR


def job_id(export_id: str, shard: int) -> str:
    """The fixed arq job id of a shard: queuing it again while it exists is a no-op.

    :param export_id: the export's id (:attr:`ExportPlan.export_id`).
    :param shard: the shard's number.
    """
    return f"inveterate-export:{export_id}:{shard:06d}"


def redis_settings(
    url: str, *, retries: int = WORKER_REDIS_RETRIES, connect_delay: int = 1
) -> RedisSettings:
    """arq's connection settings for ``url``, retrying through a broker blip.

    Every command is retried on connection errors and timeouts with a capped exponential
    backoff (``retries`` times: about a minute for the default); connecting at start-up
    is retried as often, ``connect_delay`` seconds apart.

    :param url: ``redis://[user:password@]host[:port][/db]``, ``rediss://`` for TLS, or
        ``unix:///path/to/socket``.
    :param retries: how often to retry; a short-lived command uses fewer, to fail fast.
    :param connect_delay: seconds between two tries to connect at start-up.
    :raises ValueError: for another scheme or a malformed URL.
    """
    try:
        settings = RedisSettings.from_dsn(url)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            "the broker URL must look like redis://host:6379/0 (or rediss://, unix://)"
        ) from exc
    settings.conn_timeout = 2
    settings.conn_retries = retries
    settings.conn_retry_delay = connect_delay
    settings.retry_on_timeout = True
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError]
    settings.retry = Retry(
        ExponentialBackoff(cap=_REDIS_BACKOFF_CAP, base=_REDIS_BACKOFF_BASE), retries
    )
    return settings


def broker_address(settings: RedisSettings) -> str:
    """``host:port/db`` (or the socket path) for messages: never the password.

    :param settings: from :func:`redis_settings`.
    """
    if settings.unix_socket_path:
        return settings.unix_socket_path
    return f"{settings.host}:{settings.port}/{settings.database}"


def serialize(data: dict[str, Any]) -> bytes:
    """arq's job and result serialiser: JSON, never pickle.

    An exception (a failed job's result) is stored as its class name and message.
    """
    return json.dumps(data, default=_describe, separators=(",", ":")).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    """arq's job and result deserialiser (JSON).

    :raises ValueError: if ``data`` is not a JSON object.
    """
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("an arq job or result must be a JSON object")
    return value


def _describe(value: object) -> str:
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
