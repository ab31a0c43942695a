"""The ``cluster`` group and its ``export`` command (the producer).

The commands need the ``cluster`` extra (arq, redis-py), imported only when one runs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import click

from ._cluster_common import load_cluster, redis_option, run_on_broker
from ._cluster_worker import status_command, worker_command
from ._core import Settings
from ._exits import CliError, Interrupted, UsageFailure
from ._output import EXPORT_COLUMNS, make_writer
from ._progress import cluster_progress
from ._terminal import is_terminal

pass_settings = click.make_pass_decorator(Settings)

DEFAULT_MERGE_NAME = "credits.jsonl"


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
    cluster = load_cluster(settings)
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
        progress = run_on_broker(cluster, redis_url, main())
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


cluster_group.add_command(worker_command)
cluster_group.add_command(status_command)
