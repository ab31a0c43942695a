"""What the ``cluster`` commands share: the broker option, loading the extra, errors."""

from __future__ import annotations

from collections.abc import Coroutine
from importlib import import_module
from types import ModuleType
from typing import Any, TypeVar

import click

from ._core import Settings
from ._exits import CliError, UsageFailure, run

T = TypeVar("T")

NEEDS_EXTRA = "the cluster commands need the cluster extra: pip install 'inveterate-async[cluster]'"

redis_option = click.option(
    "--redis",
    "redis_url",
    required=True,
    envvar="INVETERATE_REDIS_URL",
    show_envvar=True,
    metavar="URL",
    help="The broker (Valkey or Redis), e.g. redis://localhost:6379/0.",
)


def load_cluster(settings: Settings) -> ModuleType:
    """The ``inveterate_async.cluster`` module, or a usage error saying what to install."""
    if settings.sandbox:
        raise UsageFailure(
            "--sandbox does not apply to the cluster commands: start `inveterate sandbox` "
            "and give the workers its URL with --base-url"
        )
    try:
        return import_module("inveterate_async.cluster")
    except ImportError:
        raise UsageFailure(NEEDS_EXTRA) from None


def run_on_broker(cluster: ModuleType, redis_url: str, coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's async part; a broker that cannot be reached is a clear error."""
    from redis.exceptions import RedisError

    try:
        return run(coro)
    except (RedisError, OSError) as exc:
        address = cluster.broker_address(cluster.redis_settings(redis_url))
        raise CliError(f"the broker at {address} failed: {type(exc).__name__}: {exc}") from None
