"""``inveterate credits export``: many ledgers into one file, safely and resumably.

Everything that can be refused is refused before a file is touched or a request sent;
the rows go to a partial file renamed into place only once every member was read; with
``--state`` an interrupted export resumes where it stopped when the same command is run
again. The export itself is :func:`~inveterate_async.export_credits`; the options, the
progress bar, the messages (in ``_export_messages``) and the exit codes are the CLI's.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import TextIO

import click

from .. import ExportError, ExportFailure, ExportProgress, StreamAbortedError, export_credits
from .._export.target import OutputTarget
from ._core import Settings, connect, require_key
from ._exits import CliError, UsageFailure, describe, run, write_failed
from ._export_messages import ExportJob, cli_error, explained, failures_message
from ._ids import MemberIds, count_ids, duplicates_warning, read_lines
from ._output import plural
from ._progress import export_progress
from ._terminal import is_terminal

DEFAULT_CONCURRENCY = 8

pass_settings = click.make_pass_decorator(Settings)


@click.command("export")
@click.argument("member_ids", nargs=-1, metavar="[MEMBER_ID]...")
@click.option(
    "--ids-file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    metavar="FILE|-",
    help="Read member ids from FILE (- for stdin), one per line; blank lines are skipped. "
    "No header line: see --skip-header.",
)
@click.option("--skip-header", is_flag=True, help="The first line of --ids-file is a header.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="FILE|-",
    help="Where to write the rows (- for stdout).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    help="Row format [default: jsonl for a .jsonl/.ndjson --out, else csv].",
)
@click.option(
    "--amounts-as-strings",
    is_flag=True,
    help="JSON Lines: write amount and new_balance as strings (for readers whose JSON "
    "parser turns big numbers into floats).",
)
@click.option(
    "--force", is_flag=True, help="Replace an existing --out file (once the export is complete)."
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Keep where the export stands in FILE (SQLite): the same command resumes it.",
)
@click.option(
    "--failed-ids",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Write the ids of the members that failed to FILE, one per line (for --ids-file).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    metavar="N",
    help="Members read at the same time.",
)
@click.option("--page-size", type=click.IntRange(min=1), metavar="N", help="Credits per request.")
@pass_settings
def export_command(
    settings: Settings,
    member_ids: tuple[str, ...],
    ids_file: str | None,
    skip_header: bool,
    out: str,
    fmt: str | None,
    amounts_as_strings: bool,
    force: bool,
    state_path: str | None,
    failed_ids: str | None,
    concurrency: int,
    page_size: int | None,
) -> None:
    """Export the ledgers of many members to one CSV or JSON Lines file.

    One row per credit: member_id, created_at, amount, new_balance, reason, note, id.
    Members are written in the order of their ids, each one's rows together in ledger
    order. A member that fails has no rows in the file; it is listed at the end.
    """
    require_key(settings)
    if not member_ids and ids_file is None:
        raise click.UsageError("nothing to export: give MEMBER_IDs and/or --ids-file")
    if skip_header and ids_file is None:
        raise UsageFailure("--skip-header is about the first line of --ids-file")
    given_fmt = fmt is not None
    fmt = fmt or ("jsonl" if out.lower().endswith((".jsonl", ".ndjson")) else "csv")
    if amounts_as_strings and fmt != "jsonl":
        raise UsageFailure("--amounts-as-strings is for JSON Lines (CSV cells are text already)")
    target = None if out == "-" else OutputTarget(out)
    _check_options(settings, target, state_path, failed_ids)
    words = ["credits", "export", *member_ids]
    words += ["--ids-file", ids_file] if ids_file is not None else []
    words += ["--skip-header"] if skip_header else []
    words += ["--out", out] + (["--format", fmt] if given_fmt else [])
    words += ["--amounts-as-strings"] if amounts_as_strings else []
    words += ["--force"] if force else []
    words += ["--state", state_path] if state_path is not None else []
    words += ["--failed-ids", failed_ids] if failed_ids is not None else []
    words += ["--concurrency", str(concurrency)] if concurrency != DEFAULT_CONCURRENCY else []
    words += ["--page-size", str(page_size)] if page_size is not None else []
    job = ExportJob(
        settings,
        words,
        out,
        is_file=target is not None and target.is_file,
        partial_path="" if target is None else target.partial_path,
        fmt=fmt,
        state_path=state_path,
        failed_ids=failed_ids,
    )
    progress = is_terminal(sys.stderr)
    total = None
    if progress and ids_file != "-":
        total = count_ids(member_ids, ids_file, skip_header=skip_header)

    async def main(ids_stream: TextIO | None) -> float:
        started = time.monotonic()
        async with connect(settings) as client:
            ids = MemberIds(
                member_ids,
                None if ids_stream is None else read_lines(ids_stream),
                source="stdin" if ids_file == "-" else str(ids_file),
                skip_header=skip_header,
            )
            job.duplicates = ids.duplicates
            await ids.check_header()
            if out == "-":
                sys.stdout.flush()
            with export_progress(progress, total=total) as tracker:

                def on_progress(now: ExportProgress) -> None:
                    job.progress = now
                    tracker.update(credits=now.credits, members=now.members)

                try:
                    job.report = await export_credits(
                        client,
                        aiter(ids),
                        sys.stdout.buffer if out == "-" else out,
                        format="jsonl" if fmt == "jsonl" else "csv",
                        state=state_path,
                        overwrite=force,
                        concurrency=concurrency,
                        page_size=page_size,
                        on_progress=on_progress,
                        amounts_as_strings=amounts_as_strings,
                    )
                except StreamAbortedError as exc:
                    job.aborted = exc
                except ExportError as exc:
                    raise cli_error(job, exc) from None
        return time.monotonic() - started

    with ExitStack() as files:
        ids_stream: TextIO | None = None
        if ids_file == "-":
            ids_stream = sys.stdin
        elif ids_file is not None:
            ids_stream = files.enter_context(open(ids_file, encoding="utf-8-sig"))
        try:
            seconds = run(main(ids_stream))
        except CliError as exc:
            raise explained(job, exc) from None
    _warn_duplicates(job)
    if job.aborted is not None:
        raise explained(job, CliError(describe(job.aborted)))
    report = job.report
    if report is None:  # pragma: no cover - main() returns only with a report
        raise RuntimeError("the export has no report")
    if failed_ids is not None:
        write_failed_ids(failed_ids, report.failures)
    resumed = report.resumed_from
    if resumed is not None:
        click.echo(
            f"resumed from {state_path}: {plural(resumed.credits, 'credit')} of "
            f"{plural(resumed.members, 'member')} were saved by an earlier run",
            err=True,
        )
    click.echo(
        f"exported {plural(report.credits, 'credit')} of {plural(report.members, 'member')} "
        f"to {job.name} in {seconds:.2f} s",
        err=True,
    )
    if report.failures:
        raise CliError(failures_message(job, report))


def write_failed_ids(path: str, failures: Sequence[ExportFailure]) -> None:
    """Write the failed members' ids, one per line (an empty file when none failed)."""
    partial = f"{path}.partial"
    try:
        with open(partial, "w", encoding="utf-8", newline="\n") as file:
            file.writelines(f"{failure.member_id}\n" for failure in failures)
        os.replace(partial, path)
    except OSError as exc:
        raise write_failed(path, exc) from None


def _check_options(
    settings: Settings,
    target: OutputTarget | None,
    state_path: str | None,
    failed_ids: str | None,
) -> None:
    if state_path is not None and (target is None or not target.is_file):
        raise UsageFailure("--state needs --out FILE: stdout or a device cannot be resumed")
    if state_path is not None and settings.sandbox:
        raise UsageFailure(
            "--state cannot resume the embedded --sandbox (its cursors end with the command): "
            "run `inveterate sandbox` and point --base-url at it"
        )
    if failed_ids is not None and not os.path.isdir(os.path.dirname(os.path.abspath(failed_ids))):
        raise UsageFailure(f"cannot write {failed_ids}: no such directory")
    for option, path in (("--state", state_path), ("--failed-ids", failed_ids)):
        if path is not None and target is not None and os.path.realpath(path) == target.path:
            raise UsageFailure(f"{option} must not be the --out file")


def _warn_duplicates(job: ExportJob) -> None:
    warning = duplicates_warning(job.duplicates)
    if warning is not None:
        click.secho(warning, err=True, fg="yellow")
