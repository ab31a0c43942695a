"""What ``credits export`` says when it stops early or members failed: what was kept,
and the command to resume or retry (the export itself is :func:`export_credits`)."""

from __future__ import annotations

import os
import sys

import attrs

from .. import ExportError, ExportOutputError, ExportProgress, ExportReport, StreamAbortedError
from .._export.errors import failed_write
from ._core import Settings
from ._exits import CliError, Interrupted, UsageFailure, WriteFailed, write_failed
from ._hints import hint
from ._output import plural

FAILURES_SHOWN = 20


@attrs.define
class ExportJob:
    """One invocation: its options (to print it again) and what the export said so far."""

    settings: Settings
    words: list[str]  # the command after the global options, for hints
    out: str
    is_file: bool
    partial_path: str
    fmt: str
    state_path: str | None
    failed_ids: str | None
    #: The last progress reported: None until the output is open.
    progress: ExportProgress | None = None
    report: ExportReport | None = None
    aborted: StreamAbortedError | None = None
    duplicates: dict[str, int] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        """The output as messages name it."""
        return "stdout" if self.out == "-" else self.out

    @property
    def keeps_partial(self) -> bool:
        """Whether an early stop leaves a partial file and a state file to resume from."""
        return self.state_path is not None and self.progress is not None


class ResumeRefused(UsageFailure):
    """The saved export cannot be resumed with these ids: shown as it is (the state stays)."""


def cli_error(job: ExportJob, error: ExportError) -> CliError:
    """The CLI's error for a file the export could not use, in the CLI's words."""
    if error.problem == "exists":
        return UsageFailure(
            f"{job.out} exists: pass --force to replace it (it is replaced only when the new "
            "export is complete)"
        )
    if error.problem == "partial_missing":
        return UsageFailure(
            f"the partial export {job.partial_path} is missing: delete the --state file to "
            "start over"
        )
    if error.problem == "partial_shorter":
        return UsageFailure(
            f"the partial export {job.partial_path} is shorter than its state file says: "
            "delete the --state file to start over"
        )
    if error.problem == "ids_changed":
        return ResumeRefused(error.message)
    if not failed_write(error):
        return UsageFailure(error.message)
    cause = error.__cause__
    if isinstance(error, ExportOutputError) and isinstance(cause, OSError):
        stream = sys.stdout.buffer if job.out == "-" else None
        return write_failed(job.name, cause, stream)
    return WriteFailed(error.message)


def explained(job: ExportJob, error: CliError) -> CliError:
    """The error to show for an export that stopped early, saying what was kept."""
    if isinstance(error, ResumeRefused):
        return error
    if isinstance(error, Interrupted):
        if job.keeps_partial:
            first, *rest = _saved_lines(job, "to resume, run the same command")
            return type(error)("\n".join([f"interrupted: {first}", *rest]))
        lines = [f"interrupted: {_not_written(job)}"]
        if job.is_file and job.progress is not None:
            words = [*job.words, "--state", f"{job.out}.state"]
            lines.append(hint(job.settings, "to be able to resume, give it a state file", words))
        return type(error)("\n".join(lines))
    if job.progress is None or (isinstance(error, WriteFailed) and not job.is_file):
        return error
    if job.keeps_partial:
        lines = _saved_lines(job, "to resume once that is fixed, run the same command")
        return type(error)("\n".join([error.message, *lines]))
    return type(error)(f"{error.message}; {_not_written(job)}")


def _saved_lines(job: ExportJob, resume: str) -> list[str]:
    saved = job.progress.saved if job.progress is not None else None
    credits, members = (0, 0) if saved is None else (saved.credits, saved.members)
    lines = [
        f"{plural(credits, 'credit')} of {plural(members, 'member')} are saved "
        f"in {job.partial_path} ({job.name} is not written yet)"
    ]
    if saved is not None and saved.partial_member is not None:
        lines.append(
            f"partial: member {saved.partial_member} ({plural(saved.partial_credits, 'credit')}"
            " saved; the rest follows when resumed)"
        )
    lines.append(hint(job.settings, resume, job.words))
    return lines


def _not_written(job: ExportJob) -> str:
    progress = job.progress or ExportProgress(0, 0, 0, 0, None)
    counts = f"{plural(progress.credits, 'credit')} of {plural(progress.members_written, 'member')}"
    if job.is_file:
        return f"nothing was written to {job.name} ({counts} had been read)"
    return f"{counts} were written to {job.name} (incomplete)"


def failures_message(job: ExportJob, report: ExportReport) -> str:
    """The failed members, and the command to export just them."""
    failures = report.failures
    total = report.members + len(failures)
    lines = [
        f"{len(failures)} of {plural(total, 'member')} failed; none of their credits are in "
        f"{job.name}:"
    ]
    shown = failures if job.failed_ids is None else failures[:FAILURES_SHOWN]
    lines += [f"  {failure.member_id}: {failure.error}" for failure in shown]
    if len(shown) < len(failures):
        lines.append(f"  ... and {len(failures) - len(shown)} more")
    out = job.out
    if not job.is_file:
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
