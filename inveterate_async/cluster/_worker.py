"""Worker processes: one client each, the arq settings, and a worker that rides out
a broker that goes away for a while."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

import attrs
from arq import Worker, func
from arq.worker import Function
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from .. import InveterateClient
from ._settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_JOB_TIMEOUT,
    DEFAULT_MAX_JOBS,
    JOB_FUNCTION,
    KEEP_RESULT,
    MAX_TRIES,
    QUEUE_NAME,
    deserialize,
    recovery_seconds,
    redis_settings,
    serialize,
)
from ._shard import ShardSpec, run_shard

logger = logging.getLogger("inveterate_async.cluster")

OPTIONS_KEY = "inveterate_options"
"""The arq ``ctx`` key of the :class:`WorkerOptions` (absent: defaults and environment)."""
CLIENT_KEY = "inveterate_client"
"""The arq ``ctx`` key of the worker process's :class:`InveterateClient`."""

_HEALTH_CHECK_SECONDS = 10
_BROKER_PAUSE_SECONDS = 1.0
_BROKER_ERRORS = (RedisConnectionError, RedisTimeoutError, WatchError, OSError)


@attrs.frozen
class WorkerOptions:
    """How a worker process reads the API. The key stays in the process: it is never
    put on the queue.

    :ivar api_key: the API key (None: ``$INVETERATE_API_KEY``).
    :ivar base_url: the API root (None: ``$INVETERATE_BASE_URL``, else production).
    :ivar concurrency: members of a shard read at the same time.
    :ivar max_jobs: shards one worker process runs at the same time.
    :ivar max_retries: extra attempts of a read after a transient failure.
    :ivar job_timeout: seconds one run of a shard may last (see :data:`DEFAULT_JOB_TIMEOUT`).
    """

    api_key: str | None = attrs.field(default=None, repr=False)
    base_url: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    max_jobs: int = DEFAULT_MAX_JOBS
    max_retries: int = 2
    job_timeout: float = DEFAULT_JOB_TIMEOUT


async def startup(ctx: dict[str, Any]) -> None:
    """arq ``on_startup``: create the process's one :class:`InveterateClient`.

    :param ctx: arq's worker context; its :data:`OPTIONS_KEY` (else the defaults and the
        environment) says how.
    :raises ValueError: without an API key, or for an invalid setting.
    """
    options: WorkerOptions = ctx.get(OPTIONS_KEY) or WorkerOptions()
    ctx[OPTIONS_KEY] = options
    ctx[CLIENT_KEY] = InveterateClient(
        options.api_key,
        base_url=options.base_url,
        max_retries=options.max_retries,
        max_connections=options.concurrency * options.max_jobs,
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    """arq ``on_shutdown``: close the process's client.

    :param ctx: arq's worker context.
    """
    client: InveterateClient | None = ctx.pop(CLIENT_KEY, None)
    if client is not None:
        await client.aclose()


async def export_shard(ctx: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The arq job: export one shard (see :func:`run_shard`).

    :param spec: a :meth:`ShardSpec.to_json` object.
    :returns: ``{"shard", "members", "credits", "runs"}``.
    """
    shard = ShardSpec.from_json(spec)
    options: WorkerOptions = ctx[OPTIONS_KEY]
    run = int(ctx.get("job_try", 1))
    logger.info("shard %06d: run %d started", shard.shard, run)
    try:
        summary = await run_shard(
            ctx[CLIENT_KEY],
            shard,
            concurrency=options.concurrency,
            job_timeout=options.job_timeout,
            run=run,
        )
    except BaseException as exc:
        logger.info("shard %06d: run %d stopped (%s)", shard.shard, run, type(exc).__name__)
        raise
    logger.info("shard %06d: run %d finished, %d credits", shard.shard, run, summary["credits"])
    return summary


def shard_function(job_timeout: float = DEFAULT_JOB_TIMEOUT) -> Function:
    """The arq function of the shard job, with its timeout and (high) try limit.

    :param job_timeout: seconds one run of a shard may last.
    """
    return func(export_shard, name=JOB_FUNCTION, timeout=job_timeout, max_tries=MAX_TRIES)


def worker_settings(
    redis_url: str,
    options: WorkerOptions | None = None,
    *,
    poll_delay: float = 0.5,
    burst: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for ``arq.Worker`` (or :class:`ClusterWorker`) running shard jobs.

    :param redis_url: the broker, e.g. ``redis://localhost:6379/0``.
    :param options: the API settings and sizes; None for the defaults and the environment.
    :param poll_delay: seconds between two looks at the queue.
    :param burst: stop once the queue is empty.
    :raises ValueError: for a bad URL.
    """
    options = options or WorkerOptions()
    return {
        "functions": [shard_function(options.job_timeout)],
        "queue_name": QUEUE_NAME,
        "redis_settings": redis_settings(redis_url),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {OPTIONS_KEY: options},
        "max_jobs": options.max_jobs,
        "job_timeout": options.job_timeout,
        "keep_result": KEEP_RESULT,
        "poll_delay": poll_delay,
        "burst": burst,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "health_check_interval": _HEALTH_CHECK_SECONDS,
        "retry_jobs": True,
    }


class WorkerSettings:
    """For arq's own command: ``arq inveterate_async.cluster.WorkerSettings``.

    The broker is ``$INVETERATE_REDIS_URL`` (default ``redis://localhost:6379``), the API
    key and root ``$INVETERATE_API_KEY`` and ``$INVETERATE_BASE_URL``. Subclass it to
    change a setting. A shard of a killed worker runs again after ``job_timeout`` + 10 s
    (arq's rule); ``inveterate cluster worker`` uses 1.5 x ``job_timeout`` instead.
    """

    functions = (shard_function(),)
    queue_name = QUEUE_NAME
    redis_settings = redis_settings(
        os.environ.get("INVETERATE_REDIS_URL", "redis://localhost:6379")
    )
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = DEFAULT_MAX_JOBS
    job_timeout = DEFAULT_JOB_TIMEOUT
    keep_result = KEEP_RESULT
    job_serializer = serialize
    job_deserializer = deserialize
    health_check_interval = _HEALTH_CHECK_SECONDS
    retry_jobs = True


class ClusterWorker(Worker):
    """arq's worker, made to ride out a broker that goes away for a while.

    redis-py retries each command for about a minute; past that, or when the broker
    drops a connection in the middle of arq's WATCH/MULTI, arq's loop would end (and
    leak a job slot). This worker logs it, waits and polls again. A shard held by a
    killed worker is run again after :func:`recovery_seconds` of the job timeout.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        timeouts = [f.timeout_s or self.job_timeout_s for f in self.functions.values()]
        self.in_progress_timeout_s = recovery_seconds(max(timeouts))

    async def close(self) -> None:
        """arq's shutdown, made to finish: wait for the job tasks, ``on_shutdown``, and
        close the broker connections.

        arq gathers the tasks without ``return_exceptions`` (a job that SIGTERM cancelled
        before its shard began ended the shutdown early, client left open), needs the
        broker before ``on_shutdown``, and closes the pool with redis-py's deprecated
        ``close()``.
        """
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()
        if self._pool is None:
            return
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        with contextlib.suppress(*_BROKER_ERRORS):  # a broker that is gone cannot be told
            await self.pool.delete(self.health_check_key)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except _BROKER_ERRORS as exc:
            logger.warning("broker unavailable (%s: %s); retrying", type(exc).__name__, exc)
            await asyncio.sleep(_BROKER_PAUSE_SECONDS)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Start the jobs one by one, giving back the slot of one the broker failed."""
        for job_id in job_ids:
            if self.job_counter >= self.max_jobs:
                return
            counter = self.job_counter
            try:
                await super().start_jobs([job_id])
            except BaseException:
                if self.job_counter > counter and job_id.decode() not in self.tasks:
                    self._release_sem_dec_counter_on_complete()
                raise


def run_worker(
    redis_url: str,
    options: WorkerOptions | None = None,
    *,
    poll_delay: float = 0.5,
    burst: bool = False,
) -> ClusterWorker:
    """Run a :class:`ClusterWorker` in this process until SIGINT/SIGTERM (or, with
    ``burst``, until the queue is empty).

    SIGTERM cancels the running shards: their progress is kept and they are queued
    again at once for another worker.

    :returns: the stopped worker (its ``jobs_complete``, ``jobs_failed``, ``jobs_retried``).
    :raises ValueError: for a bad URL or option.
    """
    settings = worker_settings(redis_url, options, poll_delay=poll_delay, burst=burst)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        worker = ClusterWorker(**settings)
        worker.run()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return worker
