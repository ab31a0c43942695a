"""``inveterate credits export``: many ledgers into one file, safely and resumably.

Everything that can be refused is refused before a file is touched or a request sent;
the rows go to a partial file renamed into place only once every member was read; with
``--state`` an interrupted export resumes where it stopped when the same command is run
again. The messages (summary, failures, how to resume or retry) are built here.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from typing import TextIO

import click

from .. import StreamAbortedError
from ._core import Settings, connect, require_key
from ._exits import CliError, Interrupted, UsageFailure, WriteFailed, describe, run
from ._export_job import ExportJob, finish, open_output, stop
from ._exporter import OrderedExport
from ._hints import hint
from ._ids import MemberIds, count_ids, duplicates_warning, read_lines
from ._output import EXPORT_COLUMNS, plural, row_encoder
from ._progress import export_progress
from ._state import Checkpoint, IdsChanged
from ._target import OutputTarget, Sink
from ._terminal import is_terminal

DEFAULT_CONCURRENCY = 8
FAILURES_SHOWN = 20

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
    target = OutputTarget(out)
    _check_options(settings, target, state_path, failed_ids)
    target.check(force=force)
    words = ["credits", "export", *member_ids]
    words += ["--ids-file", ids_file] if ids_file is not None else []
    words += ["--skip-header"] if skip_header else []
    words += ["--out", out] + (["--format", fmt] if given_fmt else [])
    words += ["--force"] if force else []
    words += ["--state", state_path] if state_path is not None else []
    words += ["--failed-ids", failed_ids] if failed_ids is not None else []
    words += ["--concurrency", str(concurrency)] if concurrency != DEFAULT_CONCURRENCY else []
    words += ["--page-size", str(page_size)] if page_size is not None else []
    job = ExportJob(settings, words, target, fmt, state_path, failed_ids)
    progress = is_terminal(sys.stderr)
    total = None
    if progress and ids_file != "-":
        total = count_ids(member_ids, ids_file, skip_header=skip_header)
    header, encode = row_encoder(fmt, EXPORT_COLUMNS)

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
            start, stream = open_output(job, header.encode(), client.base_url)
            sink = Sink(stream, name=target.name, seekable=target.is_file, state=job.state)
            with export_progress(progress, total=total, done=start.head) as tracker:
                exporter = OrderedExport(
                    sink, encode, start=start, report=job.report, tracker=tracker
                )
                try:
                    await exporter.run(
                        client, aiter(ids), concurrency=concurrency, page_size=page_size
                    )
                except StreamAbortedError as exc:
                    job.aborted = exc
        return time.monotonic() - started

    with ExitStack() as files:
        ids_stream: TextIO | None = None
        if ids_file == "-":
            ids_stream = sys.stdin
        elif ids_file is not None:
            ids_stream = files.enter_context(open(ids_file, encoding="utf-8-sig"))
        try:
            seconds = run(main(ids_stream))
        except (CliError, IdsChanged) as exc:
            stop(job)
            raise _explained(job, exc) from None
    _warn_duplicates(job)
    if job.aborted is not None:
        stop(job)
        raise _explained(job, CliError(describe(job.aborted)))
    try:
        finish(job)
    except BaseException:
        stop(job)
        raise
    report = job.report
    click.echo(
        f"exported {plural(report.rows, 'credit')} of {plural(report.members_done, 'member')} "
        f"to {target.name} in {seconds:.2f} s",
        err=True,
    )
    if report.failures:
        raise CliError(_failures_message(job))


def _check_options(
    settings: Settings, target: OutputTarget, state_path: str | None, failed_ids: str | None
) -> None:
    if state_path is not None and not target.is_file:
        raise UsageFailure("--state needs --out FILE: stdout or a device cannot be resumed")
    if state_path is not None and settings.sandbox:
        raise UsageFailure(
            "--state cannot resume the embedded --sandbox (its cursors end with the command): "
            "run `inveterate sandbox` and point --base-url at it"
        )
    if failed_ids is not None and not os.path.isdir(os.path.dirname(os.path.abspath(failed_ids))):
        raise UsageFailure(f"cannot write {failed_ids}: no such directory")
    for option, path in (("--state", state_path), ("--failed-ids", failed_ids)):
        if path is not None and os.path.realpath(path) == target.path:
            raise UsageFailure(f"{option} must not be the --out file")


def _explained(job: ExportJob, error: CliError | IdsChanged) -> CliError:
    """The error to show for an export that stopped early, saying what was kept."""
    if isinstance(error, IdsChanged):
        return UsageFailure(
            f"cannot resume the export saved in {job.state_path}: {error}: give the same ids "
            "in the same order, or delete that file to start over"
        )
    if isinstance(error, Interrupted):
        if job.keeps_partial:
            first, *rest = _saved_lines(job, "to resume, run the same command")
            return type(error)("\n".join([f"interrupted: {first}", *rest]))
        lines = [f"interrupted: {_not_written(job)}"]
        if job.target.is_file and job.stream is not None:
            words = [*job.words, "--state", f"{job.target.out}.state"]
            lines.append(hint(job.settings, "to be able to resume, give it a state file", words))
        return type(error)("\n".join(lines))
    if job.stream is None or (isinstance(error, WriteFailed) and not job.target.is_file):
        return error
    if job.keeps_partial:
        lines = _saved_lines(job, "to resume once that is fixed, run the same command")
        return type(error)("\n".join([error.message, *lines]))
    return type(error)(f"{error.message}; {_not_written(job)}")


def _saved_lines(job: ExportJob, resume: str) -> list[str]:
    saved = job.report.saved or Checkpoint()
    lines = [
        f"{plural(saved.rows, 'credit')} of {plural(saved.members_done, 'member')} are saved "
        f"in {job.target.partial_path} ({job.target.name} is not written yet)"
    ]
    if saved.head_id is not None:
        lines.append(
            f"partial: member {saved.head_id} ({plural(saved.head_rows, 'credit')} saved; "
            "the rest follows when resumed)"
        )
    lines.append(hint(job.settings, resume, job.words))
    return lines


def _not_written(job: ExportJob) -> str:
    report = job.report
    counts = f"{plural(report.rows, 'credit')} of {plural(report.members_done, 'member')}"
    if job.target.is_file:
        return f"nothing was written to {job.target.name} ({counts} had been read)"
    return f"{counts} were written to {job.target.name} (incomplete)"


def _warn_duplicates(job: ExportJob) -> None:
    warning = duplicates_warning(job.duplicates)
    if warning is not None:
        click.secho(warning, err=True, fg="yellow")


def _failures_message(job: ExportJob) -> str:
    failures = job.report.failures
    total = job.report.members_done + len(failures)
    lines = [
        f"{len(failures)} of {plural(total, 'member')} failed; none of their credits are in "
        f"{job.target.name}:"
    ]
    shown = failures if job.failed_ids is None else failures[:FAILURES_SHOWN]
    lines += [f"  {failure.member_id}: {failure.error}" for failure in shown]
    if len(shown) < len(failures):
        lines.append(f"  ... and {len(failures) - len(shown)} more")
    out = job.target.out
    if not job.target.is_file:
        retry_out = out
    else:
        stem, suffix = os.path.splitext(out)
        retry_out = f"{stem}.retry{suffix}"
    retry = ["--out", retry_out, "--format", job.fmt]
    if job.failed_ids is not None:
        lead = f"their ids are in {job.failed_ids}; to export just them (same columns)"
        lines.append(
            hint(job.settings, lead, ["credits", "export", "--ids-file", job.failed_ids, *retry])
        )
    elif len(failures) <= FAILURES_SHOWN:
        ids = [failure.member_id for failure in failures]
        lines.append(
            hint(
                job.settings,
                "to export just them (same columns)",
                ["credits", "export", *ids, *retry],
            )
        )
    else:
        lines.append(
            "to export just them (same columns), put the ids above in a file for --ids-file "
            "(--failed-ids FILE writes it for you)"
        )
    return "\n".join(lines)
