"""What the broker knows of the exports: each one's shards counted by state."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, cast

import attrs
from arq import ArqRedis
from arq.constants import in_progress_key_prefix, result_key_prefix
from arq.jobs import deserialize_result

from ._settings import EXPORTS_KEY, QUEUE_NAME, deserialize, job_id


@attrs.frozen
class ExportStatus:
    """One export known to the broker, and how many of its shards are in each state."""

    export_id: str
    out: str
    members: int
    counts: dict[str, int]


async def export_statuses(redis: ArqRedis) -> list[ExportStatus]:
    """Every export the broker knows, oldest first, with its shards counted by state.

    :param redis: a pool from :func:`connect`.
    :returns: one :class:`ExportStatus` per export; its ``counts`` has ``queued``,
        ``running``, ``done``, ``failed`` and ``unknown`` (not queued, or result expired).
    """
    records = await cast("Awaitable[dict[bytes, bytes]]", redis.hgetall(EXPORTS_KEY))
    statuses = []
    for raw_id, raw_record in records.items():
        export_id = raw_id.decode()
        record = json.loads(raw_record)
        states = await shard_states(redis, export_id, range(int(record["shards"])))
        counts = {state: states.count(state) for state in _STATES}
        statuses.append(
            (record["created"], ExportStatus(export_id, record["out"], record["members"], counts))
        )
    return [status for _, status in sorted(statuses, key=lambda item: item[0])]


_STATES = ("queued", "running", "done", "failed", "unknown")


async def shard_states(redis: ArqRedis, export_id: str, shards: Iterable[int]) -> list[str]:
    """The state of each of these shards of an export, in one round trip.

    :param redis: a pool from :func:`connect`.
    :param export_id: the export's id (:attr:`ExportPlan.export_id`).
    :param shards: shard numbers.
    :returns: ``"queued"``, ``"running"``, ``"done"``, ``"failed"`` or ``"unknown"`` for each.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for shard in shards:
            jid = job_id(export_id, shard)
            pipe.get(result_key_prefix + jid)
            pipe.exists(in_progress_key_prefix + jid)
            pipe.zscore(QUEUE_NAME, jid)
        answers: Sequence[Any] = await pipe.execute()
    states = []
    for at in range(0, len(answers), 3):
        raw, running, score = answers[at : at + 3]
        if raw is not None:
            states.append(
                "done" if deserialize_result(raw, deserializer=deserialize).success else "failed"
            )
        elif running:
            states.append("running")
        else:
            states.append("queued" if score is not None else "unknown")
    return states
