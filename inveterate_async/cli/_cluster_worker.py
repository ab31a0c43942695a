"""The ``cluster worker`` and ``cluster status`` commands."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .._http.request import check_api_key, check_base_url
from ._cluster_common import load_cluster, redis_option, run_on_broker
from ._core import Settings
from ._exits import CliError, UsageFailure

pass_settings = click.make_pass_decorator(Settings)

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@click.command("worker")
@redis_option
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    metavar="N",
    help="Members of a shard read at the same time.",
)
@click.option(
    "--max-jobs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    metavar="N",
    help="Shards this worker runs at the same time.",
)
@click.option(
    "--job-timeout",
    type=click.FloatRange(min=1),
    default=20,
    show_default=True,
    metavar="SECONDS",
    help="Longest run of a shard (longer shards go on in further runs). A killed "
    "worker's shard runs again after 1.5 x this.",
)
@click.option(
    "--poll-delay",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    metavar="SECONDS",
    help="Time between two looks at the queue.",
)
@click.option("--burst", is_flag=True, help="Stop once the queue is empty.")
@pass_settings
def worker_command(
    settings: Settings,
    redis_url: str,
    concurrency: int,
    max_jobs: int,
    job_timeout: float,
    poll_delay: float,
    burst: bool,
) -> None:
    """Run shard jobs until stopped (Ctrl-C or SIGTERM: running shards are handed back).

    The API key and URL come from the global options or the environment, on every
    worker: they never go through the queue.
    """
    cluster = load_cluster(settings)
    if not settings.api_key:
        raise UsageFailure("no API key: pass --api-key or set INVETERATE_API_KEY on every worker")
    try:
        check_api_key(settings.api_key)
        if settings.base_url is not None:
            check_base_url(settings.base_url)
        cluster.redis_settings(redis_url)
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    options = cluster.WorkerOptions(
        api_key=settings.api_key,
        base_url=settings.base_url,
        concurrency=concurrency,
        max_jobs=max_jobs,
        max_retries=settings.max_retries,
        job_timeout=job_timeout,
    )
    with _worker_logging(cluster.ShardFailed):
        from redis.exceptions import RedisError

        try:
            worker = cluster.run_worker(redis_url, options, poll_delay=poll_delay, burst=burst)
        except (RedisError, OSError) as exc:
            address = cluster.broker_address(cluster.redis_settings(redis_url))
            raise CliError(f"the broker at {address} failed: {type(exc).__name__}: {exc}") from None
    _report_worker(worker)


def _report_worker(worker: Any) -> None:
    click.echo(
        f"worker stopped: {worker.jobs_complete} shard runs finished, {worker.jobs_retried} "
        f"to go on later, {worker.jobs_failed} failed",
        err=True,
    )


class _WorkerFormatter(logging.Formatter):
    """Log lines without the traceback of an expected failure (the line says it all)."""

    def __init__(self, expected: type[BaseException]) -> None:
        super().__init__(_LOG_FORMAT)
        self._expected = expected

    def formatException(self, ei: Any) -> str:
        if isinstance(ei[1], self._expected):
            return ""
        return super().formatException(ei)


@contextmanager
def _worker_logging(expected: type[BaseException]) -> Iterator[None]:
    """arq's and the shard jobs' INFO lines on stderr while the worker runs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_WorkerFormatter(expected))
    loggers = [logging.getLogger(name) for name in ("arq", "inveterate_async.cluster")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


@click.command("status")
@redis_option
@pass_settings
def status_command(settings: Settings, redis_url: str) -> None:
    """Show the exports the broker knows: queued, running, done and failed shards."""
    cluster = load_cluster(settings)
    try:
        cluster.redis_settings(redis_url)
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None

    async def main() -> tuple[list[Any], bytes | None]:
        redis = await cluster.connect(redis_url)
        try:
            health = await redis.get(cluster.QUEUE_NAME + ":health-check")
            return await cluster.export_statuses(redis), health
        finally:
            await redis.aclose()

    _print_status(*run_on_broker(cluster, redis_url, main()))


def _print_status(statuses: list[Any], health: bytes | None) -> None:
    if health is None:
        click.echo("workers: none reported in the last 11 s")
    else:
        click.echo(f"workers: last report {health.decode()}")
    if not statuses:
        click.echo("no exports")
    for status in statuses:
        counts = status.counts
        shards = sum(counts.values())
        line = (
            f"{status.export_id}  {status.out}  {status.members} members, {shards} shards: "
            f"{counts['done']} done, {counts['running']} running, {counts['queued']} queued, "
            f"{counts['failed']} failed"
        )
        if counts["unknown"]:
            line += f", {counts['unknown']} unknown (not queued, or results expired)"
        click.echo(line)
