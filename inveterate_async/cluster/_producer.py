"""The producer's side: plan the shards, queue them once, watch them, report."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import attrs
from arq import ArqRedis, create_pool
from arq.constants import result_key_prefix
from arq.jobs import deserialize_result
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._export.rows import EXPORT_COLUMNS
from ._files import count_lines, write_atomically
from ._settings import (
    BROKER_PATIENCE,
    COMMAND_REDIS_RETRIES,
    DEFAULT_SHARD_SIZE,
    EXPORTS_KEY,
    JOB_FUNCTION,
    KEEP_RESULT,
    QUEUE_NAME,
    deserialize,
    job_id,
    redis_settings,
    serialize,
)
from ._shard import ShardSpec, shard_file
from ._status import shard_states

_LOOKS_PER_CHECK = 20

MANIFEST = "export.json"
"""The file in the output folder that says which export it holds."""


class ExportConflict(ValueError):
    """The output folder holds another export (other members or shard size)."""


@attrs.frozen
class ExportPlan:
    """An export cut into shards; the same ids, folder and shard size give the same plan.

    :ivar export_id: a digest of the folder, the shard size and the member ids.
    :ivar out: the output folder, absolute.
    :ivar shards: the member ids of each shard, in order.
    :ivar duplicates: ids given more than once (each member is exported once).
    """

    export_id: str
    out: Path
    shard_size: int
    page_size: int | None
    shards: tuple[tuple[str, ...], ...]
    duplicates: int = 0

    @property
    def members(self) -> int:
        """The number of members exported."""
        return sum(len(shard) for shard in self.shards)

    def spec(self, shard: int) -> ShardSpec:
        """The job argument of shard number ``shard``."""
        return ShardSpec(self.export_id, shard, str(self.out), self.shards[shard], self.page_size)

    def shard_files(self) -> list[Path]:
        """The shards' files, in order."""
        return [shard_file(self.out, shard) for shard in range(len(self.shards))]


def plan_export(
    member_ids: Iterable[str],
    out: str | Path,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    page_size: int | None = None,
) -> ExportPlan:
    """Cut the member ids into shards of ``shard_size``, dropping repeated ids.

    :raises ValueError: for no ids, an empty id, or a size below 1.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be an int >= 1, got {shard_size!r}")
    if page_size is not None and (type(page_size) is not int or page_size < 1):
        raise ValueError(f"page_size must be an int >= 1 or None, got {page_size!r}")
    given = 0
    unique: dict[str, None] = {}
    for member in member_ids:
        if not isinstance(member, str) or not member:
            raise ValueError(f"member ids must be non-empty str, got {member!r}")
        given += 1
        unique[member] = None
    if not unique:
        raise ValueError("nothing to export: no member ids")
    ids = list(unique)
    folder = Path(out).absolute()
    digest = hashlib.sha256(f"{folder}\n{shard_size}\n".encode())
    for member in ids:
        digest.update(member.encode() + b"\n")
    shards = tuple(tuple(ids[at : at + shard_size]) for at in range(0, len(ids), shard_size))
    return ExportPlan(
        digest.hexdigest()[:20], folder, shard_size, page_size, shards, given - len(ids)
    )


def prepare_output(plan: ExportPlan) -> None:
    """Create the output folder and its manifest, or check that it holds this export.

    :raises ExportConflict: if the folder holds another export.
    :raises OSError: if the folder cannot be written.
    """
    plan.out.mkdir(parents=True, exist_ok=True)
    manifest = plan.out / MANIFEST
    if manifest.exists():
        try:
            found = json.loads(manifest.read_text(encoding="utf-8")).get("export")
        except (ValueError, AttributeError):
            found = None
        if found != plan.export_id:
            raise ExportConflict(
                f"{plan.out} holds another export (other member ids or shard size): "
                "use an empty folder, or the same ids and --shard-size"
            )
        return
    record = {
        "export": plan.export_id,
        "members": plan.members,
        "shards": len(plan.shards),
        "shard_size": plan.shard_size,
        "columns": list(EXPORT_COLUMNS),
        "files": "shard-NNNNNN.jsonl",
    }
    write_atomically(manifest, lambda file: file.write(json.dumps(record, indent=2) + "\n"))


async def connect(redis_url: str, *, retries: int = COMMAND_REDIS_RETRIES) -> ArqRedis:
    """A connection pool to the broker that queues shard jobs (JSON jobs).

    :param retries: how often a failed command or connection is retried.
    :raises ValueError: for a bad URL.
    :raises redis.exceptions.RedisError: if the broker cannot be reached.
    """
    return await create_pool(
        redis_settings(redis_url, retries=retries, connect_delay=0),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=QUEUE_NAME,
    )


@attrs.frozen
class Submitted:
    """What :func:`submit_export` did: shards queued now, queued or running before, done."""

    queued: list[int]
    pending: list[int]
    done: list[int]


async def submit_export(redis: ArqRedis, plan: ExportPlan) -> Submitted:
    """Queue every shard that has no file yet, each under its fixed job id.

    A shard already queued or running is left alone; one that failed earlier is queued
    again (it resumes from its journal). Running this twice queues nothing twice.

    :param redis: a pool from :func:`connect`.
    :param plan: the export, its folder prepared with :func:`prepare_output`.
    :returns: the shards queued now, queued (or finished elsewhere) before, and done.
    """
    record = {"out": str(plan.out), "members": plan.members, "shards": len(plan.shards)}
    record["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    await cast("Awaitable[int]", redis.hsetnx(EXPORTS_KEY, plan.export_id, json.dumps(record)))
    await redis.expire(EXPORTS_KEY, KEEP_RESULT)
    queued: list[int] = []
    pending: list[int] = []
    done: list[int] = []
    for shard, path in enumerate(plan.shard_files()):
        if path.exists():
            done.append(shard)
            continue
        key = result_key_prefix + job_id(plan.export_id, shard)
        raw = await redis.get(key)
        if raw is not None and not deserialize_result(raw, deserializer=deserialize).success:
            await redis.delete(key)  # failed before: try again, from its journal
        elif raw is not None:
            pending.append(shard)  # finished, but its file is not here: reported by the wait
            continue
        (queued if await _enqueue(redis, plan, shard) else pending).append(shard)
    return Submitted(queued, pending, done)


async def _enqueue(redis: ArqRedis, plan: ExportPlan, shard: int) -> bool:
    """Queue a shard under its fixed id; False (nothing done) while its job or result exists."""
    job = await redis.enqueue_job(
        JOB_FUNCTION,
        plan.spec(shard).to_json(),
        _job_id=job_id(plan.export_id, shard),
        _queue_name=QUEUE_NAME,
        _expires=KEEP_RESULT,
    )
    return job is not None


@attrs.define
class Progress:
    """The running totals of an export while it is waited for."""

    shards: int
    done: int = 0
    members: int = 0
    credits: int = 0
    failed: dict[int, str] = attrs.field(factory=dict)

    def add_done(self, summary: dict[str, Any]) -> None:
        """Count a finished shard."""
        self.done += 1
        self.members += int(summary["members"])
        self.credits += int(summary["credits"])


async def wait_for_export(
    redis: ArqRedis,
    plan: ExportPlan,
    submitted: Submitted,
    *,
    on_progress: Callable[[Progress], object] = lambda progress: None,
    poll_seconds: float = 0.5,
    broker_patience: float = BROKER_PATIENCE,
) -> Progress:
    """Wait until every shard is done or failed; the progress after each look.

    A broker that stops answering (a restart) is waited for, ``broker_patience``
    seconds at most. Every :data:`_LOOKS_PER_CHECK` looks, a shard that is neither queued,
    running nor finished (a broker that lost its data) is queued again.

    :returns: the totals; ``failed`` maps shard numbers to their error text.
    :raises redis.exceptions.RedisError: if the broker is gone for longer.
    """
    progress = Progress(len(plan.shards))
    for shard in submitted.done:
        rows = await asyncio.to_thread(count_lines, shard_file(plan.out, shard))
        progress.add_done({"members": len(plan.shards[shard]), "credits": rows})
    waiting = sorted([*submitted.queued, *submitted.pending])
    on_progress(progress)
    loop = asyncio.get_running_loop()
    answered = loop.time()
    looks = 0
    while waiting:
        looks += 1
        keys = [result_key_prefix + job_id(plan.export_id, shard) for shard in waiting]
        try:
            found = await redis.mget(keys)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            if loop.time() - answered > broker_patience:
                raise
            await asyncio.sleep(poll_seconds)
            continue
        answered = loop.time()
        still: list[int] = []
        for shard, raw in zip(waiting, found, strict=True):
            if raw is None:
                still.append(shard)
                continue
            result = deserialize_result(raw, deserializer=deserialize)
            if not result.success:
                progress.failed[shard] = str(result.result)
            elif not shard_file(plan.out, shard).exists():
                progress.failed[shard] = (
                    f"a worker wrote shard {shard}, but it is not in {plan.out}: the output "
                    "folder must be shared storage, at the same path on every machine"
                )
            else:
                progress.add_done(result.result)
        waiting = still
        on_progress(progress)
        if waiting and looks % _LOOKS_PER_CHECK == 0:
            await _requeue_lost(redis, plan, waiting)
        if waiting:
            await asyncio.sleep(poll_seconds)
    return progress


async def _requeue_lost(redis: ArqRedis, plan: ExportPlan, waiting: list[int]) -> None:
    states = await shard_states(redis, plan.export_id, waiting)
    for shard, state in zip(waiting, states, strict=True):
        # Safe against a worker finishing it meanwhile: arq queues nothing under an id
        # whose job or result exists.
        if state == "unknown":
            await _enqueue(redis, plan, shard)
