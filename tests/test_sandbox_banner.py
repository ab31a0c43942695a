"""``inveterate sandbox --host 0.0.0.0`` prints URLs a client can connect to, and the
opt-in plain http to another host needs; the SDK accepts what it prints."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from click.testing import CliRunner

from inveterate_async import InveterateClient
from inveterate_async.cli import _serve
from inveterate_async.cli import app as cli_app

HOSTNAME = socket.gethostname()


@pytest.mark.parametrize(
    ("base_url", "local", "elsewhere"),
    [
        ("http://0.0.0.0:8080/v2.0", "http://127.0.0.1:8080/v2.0", f"http://{HOSTNAME}:8080/v2.0"),
        ("http://[::]:9000/v2.0", "http://[::1]:9000/v2.0", f"http://{HOSTNAME}:9000/v2.0"),
        ("http://127.0.0.1:8080/v2.0", "http://127.0.0.1:8080/v2.0", None),
        ("http://10.1.2.3:8080/v2.0", "http://10.1.2.3:8080/v2.0", None),
    ],
)
def test_client_urls_never_name_an_unspecified_address(
    base_url: str, local: str, elsewhere: str | None
) -> None:
    assert _serve.client_urls(base_url) == (local, elsewhere)


def banner(monkeypatch: pytest.MonkeyPatch, host: str, bound_url: str) -> list[str]:
    """The banner of ``inveterate sandbox --host HOST`` for a sandbox bound at bound_url."""

    class Started:
        base_url = bound_url
        api_key = "sandbox-key"

    async def fake_serve(**kwargs: Any) -> None:
        kwargs["ready"](Started())

    monkeypatch.setattr(_serve, "serve_sandbox", fake_serve)
    result = CliRunner().invoke(cli_app, ["sandbox", "--host", host])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_all_interfaces_banner_gives_a_local_url_and_one_for_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = banner(monkeypatch, "0.0.0.0", "http://0.0.0.0:8080/v2.0")
    assert lines[1:] == [
        "  base URL: http://127.0.0.1:8080/v2.0",
        "  API key:  sandbox-key",
        "  try:      curl -s -H 'X-Inveterate-Api-Key: sandbox-key' "
        "'http://127.0.0.1:8080/v2.0/admin/members/1/credits?limit=3'",
        "  or:       INVETERATE_BASE_URL=http://127.0.0.1:8080/v2.0 "
        "INVETERATE_API_KEY=sandbox-key inveterate credits list 1",
        f"  from other machines or containers: http://{HOSTNAME}:8080/v2.0 (or this machine's "
        "address), with INVETERATE_ALLOW_INSECURE_HTTP=1 for the SDK and the CLI",
    ]
    assert "0.0.0.0" not in "\n".join(lines)


def test_a_non_loopback_host_banner_includes_the_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = banner(monkeypatch, "10.1.2.3", "http://10.1.2.3:8080/v2.0")
    assert lines[1] == "  base URL: http://10.1.2.3:8080/v2.0"
    assert lines[4] == (
        "  or:       INVETERATE_ALLOW_INSECURE_HTTP=1 INVETERATE_BASE_URL=http://10.1.2.3:8080/v2.0"
        " INVETERATE_API_KEY=sandbox-key inveterate credits list 1"
    )
    assert len(lines) == 5


async def test_the_sdk_accepts_the_printed_urls_as_instructed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local, elsewhere = _serve.client_urls("http://0.0.0.0:8080/v2.0")
    assert elsewhere is not None
    monkeypatch.delenv("INVETERATE_ALLOW_INSECURE_HTTP", raising=False)
    assert InveterateClient("k", base_url=local).base_url == local
    with pytest.raises(ValueError, match="INVETERATE_ALLOW_INSECURE_HTTP=1"):
        InveterateClient("k", base_url=elsewhere)
    monkeypatch.setenv("INVETERATE_ALLOW_INSECURE_HTTP", "1")
    assert InveterateClient("k", base_url=elsewhere).base_url == elsewhere
