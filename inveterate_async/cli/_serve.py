"""``inveterate sandbox``: serve a seeded sandbox API in the foreground."""

from __future__ import annotations

import asyncio
import math
import shlex
import signal
import socket
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from .._http.request import is_loopback
from ._core import SANDBOX_API_KEY, start_sandbox
from ._exits import CliError
from ._rehearsal import SHARE, check_write_shares, describe_faults, rehearsal_options

if TYPE_CHECKING:  # the sandbox is imported only by the commands that serve it
    from ..testing import Sandbox


async def serve_sandbox(
    *,
    stop: asyncio.Event,
    host: str = "127.0.0.1",
    port: int = 8080,
    members: int = 100,
    seed: int = 0,
    api_key: str = SANDBOX_API_KEY,
    ready: Callable[[Sandbox], object] | None = None,
    credits_per_member: int = 5,
    page_size: int = 50,
    latency: float = 0.0,
    fail_rate: float = 0.0,
    visibility_delay: float = 0.0,
    fail_writes_before: float = 0.0,
    fail_writes_after: float = 0.0,
    drop_writes_after: float = 0.0,
    fault_seed: int | None = None,
) -> None:
    """Serve a seeded sandbox until ``stop`` is set.

    Requests are not recorded: a long-running server keeps constant memory.

    :param stop: set it to stop the sandbox and return.
    :param host: the interface to bind.
    :param port: the TCP port (0: any free port).
    :param members: how many members (ids ``"1"`` to ``str(members)``) to seed.
    :param seed: the seed of the generated ledgers and of the random failures.
    :param api_key: the key the sandbox accepts.
    :param ready: called once with the sandbox when it is up (e.g. to print its address).
    :param credits_per_member: the entries seeded in each ledger.
    :param page_size: credits per page when a request gives no ``limit``.
    :param latency: seconds every request waits before its answer.
    :param fail_rate: the probability that a read is answered with a transient 503.
    :param visibility_delay: seconds after a write before its credit shows in reads.
    :param fail_writes_before: the share of writes answered 500 without being applied.
    :param fail_writes_after: the share of writes applied, then answered 500.
    :param drop_writes_after: the share of writes applied, then left without an answer.
    :param fault_seed: the seed of the random failures (reads and writes) if not ``seed``.
    :raises OSError: if the address cannot be bound.
    :raises ValueError: if ``visibility_delay`` is negative or not finite, or the write
        shares are not 0 to 1 or sum above 1 (see :meth:`Sandbox.fail_writes_randomly`).
    """
    if not 0 <= visibility_delay < math.inf:
        raise ValueError(f"visibility_delay must be a finite number >= 0, got {visibility_delay!r}")
    faults_seed = seed if fault_seed is None else fault_seed
    sandbox = await start_sandbox(
        members=members,
        seed=seed,
        api_key=api_key,
        host=host,
        port=port,
        credits_per_member=credits_per_member,
        page_size=page_size,
        latency=latency,
        fail_rate=fail_rate,
        record_requests=False,
    )
    try:
        # Set before the loop runs again: no request is served without them.
        sandbox.visibility_delay = visibility_delay
        sandbox.fail_randomly(fail_rate, seed=faults_seed)
        sandbox.fail_writes_randomly(
            before=fail_writes_before,
            after=fail_writes_after,
            dropped=drop_writes_after,
            seed=faults_seed,
        )
        if ready is not None:
            ready(sandbox)
        await stop.wait()
    finally:
        await sandbox.close()


INSECURE_HTTP_OPT_IN = "INVETERATE_ALLOW_INSECURE_HTTP=1"


def client_urls(base_url: str) -> tuple[str, str | None]:
    """Base URLs a client can use: one for this machine, and one for other machines and
    containers when the sandbox listens on every interface (0.0.0.0 or ::), else None.

    ``http://0.0.0.0:8080/v2.0`` is an address to bind, not one to connect to.
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if host not in ("0.0.0.0", "::"):
        return base_url, None
    local = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return (
        parts._replace(netloc=f"{local}:{parts.port}").geturl(),
        parts._replace(netloc=f"{socket.gethostname()}:{parts.port}").geturl(),
    )


def _announce(sandbox: Sandbox, members: int, faults: list[str]) -> None:
    url, elsewhere = client_urls(sandbox.base_url)
    key = sandbox.api_key
    # The SDK and the CLI refuse plain http to another host unless told to allow it.
    opt_in = "" if is_loopback(urlsplit(url).hostname or "") else f"{INSECURE_HTTP_OPT_IN} "
    curl = (
        f"curl -s -H {shlex.quote('X-Inveterate-Api-Key: ' + key)} "
        f"{shlex.quote(url + '/admin/members/1/credits?limit=3')}"
    )
    click.echo(f"Inveterate sandbox: {members} members (ids 1..{members}); Ctrl-C to stop")
    click.echo(f"  base URL: {url}")
    click.echo(f"  API key:  {key}")
    click.echo(f"  try:      {curl}")
    click.echo(
        f"  or:       {opt_in}INVETERATE_BASE_URL={shlex.quote(url)} "
        f"INVETERATE_API_KEY={shlex.quote(key)} inveterate credits list 1"
    )
    if elsewhere is not None:
        click.echo(
            f"  from other machines or containers: {elsewhere} (or this machine's address), "
            f"with {INSECURE_HTTP_OPT_IN} for the SDK and the CLI"
        )
    for line in faults:
        click.echo(line)
    sys.stdout.flush()


@click.command("sandbox")
@click.option(
    "--host", default="127.0.0.1", show_default=True, metavar="HOST", help="Interface to bind."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    metavar="PORT",
    help="TCP port (0: any free port).",
)
@click.option(
    "--members",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    metavar="N",
    help="Members to seed.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, metavar="S", help="Seed of the ledgers."
)
@click.option(
    "--api-key",
    default=SANDBOX_API_KEY,
    show_default=True,
    metavar="K",
    help="The key the sandbox accepts.",
)
@click.option(
    "--credits-per-member",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    metavar="N",
    help="Credits seeded in each ledger (deterministic for a --seed).",
)
@click.option(
    "--page-size",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    metavar="N",
    help="Credits per page when a request gives no limit.",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="MS",
    help="Milliseconds every request waits before its answer.",
)
@click.option(
    "--fail-rate",
    type=SHARE,
    default=0,
    show_default=True,
    metavar="P",
    help="Probability that a read gets a transient 503 (seeded with --fault-seed).",
)
@rehearsal_options
def sandbox_command(
    host: str,
    port: int,
    members: int,
    seed: int,
    api_key: str,
    credits_per_member: int,
    page_size: int,
    latency: float,
    fail_rate: float,
    fail_writes_before: float,
    fail_writes_after: float,
    drop_writes_after: float,
    visibility_delay: float,
    fault_seed: int | None,
) -> None:
    """Serve a seeded sandbox API in the foreground.

    For trying the API by hand or from any language, as the API of a multi-process test
    (requests are not recorded, so memory stays flat), or for rehearsing a bulk
    `credits apply` against failing writes; stop it with Ctrl-C.
    """
    check_write_shares(fail_writes_before, fail_writes_after, drop_writes_after)
    faults = describe_faults(
        fail_rate=fail_rate,
        visibility_delay=visibility_delay,
        fail_writes_before=fail_writes_before,
        fail_writes_after=fail_writes_after,
        drop_writes_after=drop_writes_after,
        seed=seed if fault_seed is None else fault_seed,
    )
    if not is_loopback(host):
        click.secho(
            f"Warning: {host} is not a loopback address: other machines may reach this "
            "sandbox (test data only, and its key is printed below)",
            err=True,
            fg="yellow",
        )

    async def main() -> None:
        stop = asyncio.Event()
        with suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await serve_sandbox(
            stop=stop,
            host=host,
            port=port,
            members=members,
            seed=seed,
            api_key=api_key,
            ready=lambda sandbox: _announce(sandbox, members, faults),
            credits_per_member=credits_per_member,
            page_size=page_size,
            latency=latency / 1000,
            fail_rate=fail_rate,
            visibility_delay=visibility_delay,
            fail_writes_before=fail_writes_before,
            fail_writes_after=fail_writes_after,
            drop_writes_after=drop_writes_after,
            fault_seed=fault_seed,
        )

    # Not the shared runner: Ctrl-C is how a sandbox stops, a success rather than exit 130.
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except OSError as exc:
        raise CliError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    click.echo("sandbox stopped", err=True)
