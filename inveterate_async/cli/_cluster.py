"""The ``cluster`` commands: ``export`` (the producer), ``worker`` and ``status``.

They need the ``cluster`` extra (arq, redis-py), imported only when a command runs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO, TypeVar

import click

from .._request import check_api_key, check_base_url
from ._core import Settings
from ._exits import CliError, Interrupted, UsageFailure, run
from ._output import EXPORT_COLUMNS, make_writer
from ._progress import cluster_progress
from ._terminal import is_terminal

T = TypeVar("T")
pass_settings = click.make_pass_decorator(Settings)

NEEDS_EXTRA = "the cluster commands need the cluster extra: pip install 'inveterate-async[cluster]'"
DEFAULT_MERGE_NAME = "credits.jsonl"
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

redis_option = click.option(
    "--redis",
    "redis_url",
    required=True,
    envvar="INVETERATE_REDIS_URL",
    show_envvar=True,
    metavar="URL",
    help="The broker (Valkey or Redis), e.g. redis://localhost:6379/0.",
)


def _cluster(settings: Settings) -> ModuleType:
    if settings.sandbox:
        raise UsageFailure(
            "--sandbox does not apply to the cluster commands: start `inveterate sandbox` "
            "and give the workers its URL with --base-url"
        )
    try:
        return import_module("inveterate_async.cluster")
    except ImportError:
        raise UsageFailure(NEEDS_EXTRA) from None


def _run_on_broker(cluster: ModuleType, redis_url: str, coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's async part; a broker that cannot be reached is a clear error."""
    from redis.exceptions import RedisError

    try:
        return run(coro)
    except (RedisError, OSError) as exc:
        address = cluster.broker_address(cluster.redis_settings(redis_url))
        raise CliError(f"the broker at {address} failed: {type(exc).__name__}: {exc}") from None


@click.group("cluster")
def cluster_group() -> None:
    """Export ledgers across worker processes and machines (arq on Valkey or Redis).

    Start workers with `inveterate cluster worker`, then queue an export with
    `inveterate cluster export`. See docs/scaling.md.
    """


@cluster_group.command("export")
@click.argument("member_ids", nargs=-1, metavar="[MEMBER_ID]...")
@click.option(
    "--ids-file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    metavar="FILE|-",
    help="Read member ids from FILE (- for stdin), one per line; blank lines are skipped.",
)
@redis_option
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Folder of the shard files: the same path on every worker (shared storage).",
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    metavar="N",
    help="Members per shard (one job).",
)
@click.option("--page-size", type=click.IntRange(min=1), metavar="N", help="Credits per request.")
@click.option(
    "--merge",
    "merge_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help=f"Where to write all the rows: CSV, or JSON Lines for a .jsonl/.ndjson name "
    f"[default: DIR/{DEFAULT_MERGE_NAME}].",
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Queue the shards and return; the same command again waits and merges.",
)
@pass_settings
def export_command(
    settings: Settings,
    member_ids: tuple[str, ...],
    ids_file: str | None,
    redis_url: str,
    out: str,
    shard_size: int,
    page_size: int | None,
    merge_path: str | None,
    no_wait: bool,
) -> None:
    """Queue an export of many members' ledgers as shards, wait for the workers, and
    merge the shards into one file (its path is printed).

    Running the same command again queues nothing twice and reads nothing twice: it
    waits for what is left and merges. The API key is not needed here: only the
    workers read the API.
    """
    cluster = _cluster(settings)
    ids = _read_ids(member_ids, ids_file)
    try:
        plan = cluster.plan_export(ids, out, shard_size=shard_size, page_size=page_size)
        cluster.prepare_output(plan)
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    except OSError as exc:
        raise UsageFailure(f"cannot write {out}: {exc.strerror or exc}") from None
    target = Path(merge_path) if merge_path else plan.out / DEFAULT_MERGE_NAME

    async def main() -> Any:
        redis = await cluster.connect(redis_url)
        try:
            submitted = await cluster.submit_export(redis, plan)
            click.echo(
                f"export {plan.export_id}: {plan.members} members in {len(plan.shards)} shards; "
                f"{len(submitted.queued)} queued now, {len(submitted.pending)} queued earlier, "
                f"{len(submitted.done)} done earlier"
                + (f" ({plan.duplicates} repeated ids skipped)" if plan.duplicates else ""),
                err=True,
            )
            if no_wait:
                return None
            with cluster_progress(is_terminal(sys.stderr), total=len(plan.shards)) as show:
                return await cluster.wait_for_export(redis, plan, submitted, on_progress=show)
        finally:
            await redis.aclose()

    try:
        progress = _run_on_broker(cluster, redis_url, main())
    except Interrupted:
        raise Interrupted(
            "interrupted: the shards stay queued and the workers go on; run the same "
            "command again to wait for them and merge"
        ) from None
    if progress is not None:
        _report_export(cluster, plan, progress, target)


def _report_export(cluster: ModuleType, plan: Any, progress: Any, target: Path) -> None:
    """The failed shards (exit 1), or the merged file and its path."""
    if progress.failed:
        lines = "".join(f"\n  shard {n}: {text}" for n, text in sorted(progress.failed.items()))
        raise CliError(
            f"{len(progress.failed)} of {len(plan.shards)} shards failed (the others are "
            f"written; what the failed ones read is kept):{lines}\n"
            "fix the cause and run the same command again: only what is missing is read"
        )
    rows = _merge(cluster, plan, target)
    click.echo(
        f"exported {rows} credits of {progress.members} members in {len(plan.shards)} shards "
        f"to {plan.out}; merged file:",
        err=True,
    )
    click.echo(str(target))


def _read_ids(member_ids: tuple[str, ...], ids_file: str | None) -> list[str]:
    ids = [member.strip() for member in member_ids if member.strip()]
    if ids_file is not None:
        if ids_file == "-":
            ids.extend(_id_lines(sys.stdin))
        else:
            with open(ids_file, encoding="utf-8-sig") as file:
                ids.extend(_id_lines(file))
    if not ids:
        raise click.UsageError("nothing to export: give MEMBER_IDs and/or --ids-file")
    return ids


def _id_lines(stream: TextIO) -> Iterator[str]:
    return (line.strip() for line in stream if line.strip())


def _merge(cluster: ModuleType, plan: Any, target: Path) -> int:
    from ..cluster._files import write_atomically

    shards = plan.shard_files()
    try:
        if target.name.lower().endswith((".jsonl", ".ndjson")):
            return int(cluster.merge_jsonl(shards, target))

        def fill(stream: TextIO) -> int:
            writer = make_writer("csv", stream, EXPORT_COLUMNS)
            for row in cluster.read_rows(shards):
                writer.write_row(row)
            writer.close()
            return writer.rows

        return write_atomically(target, fill)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None


@cluster_group.command("worker")
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
    cluster = _cluster(settings)
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


@cluster_group.command("status")
@redis_option
@pass_settings
def status_command(settings: Settings, redis_url: str) -> None:
    """Show the exports the broker knows: queued, running, done and failed shards."""
    cluster = _cluster(settings)
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

    _print_status(*_run_on_broker(cluster, redis_url, main()))


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
