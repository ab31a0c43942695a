"""Exporting every member's ledger across worker processes and machines, on arq.

Install with the ``cluster`` extra (``pip install "inveterate-async[cluster]"``: arq and
redis-py). The member ids are cut into shards; each shard is an arq job on a Valkey or
Redis broker, run by any worker process::

    inveterate cluster worker --redis redis://broker:6379/0          # on each machine
    inveterate cluster export --redis redis://broker:6379/0 --ids-file ids.txt --out /shared/out

or from Python: :func:`plan_export`, :func:`prepare_output`, :func:`connect`,
:func:`submit_export` and :func:`wait_for_export` on the producer's side;
:func:`run_worker` (or ``arq inveterate_async.cluster.WorkerSettings``) on the workers'.
The guarantees and their limits are in docs/scaling.md.
"""

from ._merge import merge_jsonl, read_rows
from ._producer import (
    MANIFEST,
    ExportConflict,
    ExportPlan,
    Progress,
    Submitted,
    connect,
    plan_export,
    prepare_output,
    submit_export,
    wait_for_export,
)
from ._settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_JOB_TIMEOUT,
    DEFAULT_MAX_JOBS,
    DEFAULT_SHARD_SIZE,
    JOB_FUNCTION,
    QUEUE_NAME,
    broker_address,
    deserialize,
    job_id,
    recovery_seconds,
    redis_settings,
    serialize,
)
from ._shard import ShardFailed, ShardSpec, is_transient, journal_file, run_shard, shard_file
from ._status import ExportStatus, export_statuses, shard_states
from ._worker import (
    ClusterWorker,
    WorkerOptions,
    WorkerSettings,
    export_shard,
    run_worker,
    shard_function,
    shutdown,
    startup,
    worker_settings,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_JOB_TIMEOUT",
    "DEFAULT_MAX_JOBS",
    "DEFAULT_SHARD_SIZE",
    "JOB_FUNCTION",
    "MANIFEST",
    "QUEUE_NAME",
    "ClusterWorker",
    "ExportConflict",
    "ExportPlan",
    "ExportStatus",
    "Progress",
    "ShardFailed",
    "ShardSpec",
    "Submitted",
    "WorkerOptions",
    "WorkerSettings",
    "broker_address",
    "connect",
    "deserialize",
    "export_shard",
    "export_statuses",
    "is_transient",
    "job_id",
    "journal_file",
    "merge_jsonl",
    "plan_export",
    "prepare_output",
    "read_rows",
    "recovery_seconds",
    "redis_settings",
    "run_shard",
    "run_worker",
    "serialize",
    "shard_file",
    "shard_function",
    "shard_states",
    "shutdown",
    "startup",
    "submit_export",
    "wait_for_export",
    "worker_settings",
]
