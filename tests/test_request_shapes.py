"""What goes on the wire, checked with aioresponses (the Sandbox tests are the source of truth)."""

from __future__ import annotations

import re
from typing import Any

from yarl import URL

from inveterate_async import InveterateClient, __version__

BASE = "https://api.example.com/v2.0"
KEY = "sk_live_shape_key"
PAGE = {"message": "ok", "data": {"credits": [], "lastCreditEntry": None}}


def _only_call(mocked: Any) -> tuple[str, URL, dict[str, Any]]:
    ((method, url), calls) = next(iter(mocked.requests.items()))
    assert len(calls) == 1
    return method, url, calls[0].kwargs


async def test_get_shape(mocked_api: Any) -> None:
    mocked_api.get(re.compile(r".*"), payload=PAGE)
    async with InveterateClient(KEY, base_url=BASE) as client:
        await client.get_credits_page("a/b", limit=10, cursor="x+y")
    method, url, kwargs = _only_call(mocked_api)
    assert method == "GET"
    assert url.raw_path == "/v2.0/admin/members/a%2Fb/credits"
    # aioresponses sorts the query it records; the exact order is checked in test_request.
    assert url.query == {"limit": "10", "lastCreditEntry": "x+y"}
    assert "lastCreditEntry=x%2By" in url.raw_query_string
    headers = kwargs["headers"]
    assert headers["X-Inveterate-Api-Key"] == KEY
    assert headers["Accept"] == "application/json"
    assert headers["User-Agent"] == f"inveterate-async/{__version__}"
    assert "Content-Type" not in headers
    assert kwargs["allow_redirects"] is False
    assert kwargs["data"] is None


async def test_post_shape(mocked_api: Any) -> None:
    mocked_api.post(re.compile(r".*"), status=201, payload={"message": "created", "data": {}})
    async with InveterateClient(KEY, base_url=BASE) as client:
        result = await client.create_credit(42, "10.10", note="hi", force=False)
    assert result.message == "created"
    method, url, kwargs = _only_call(mocked_api)
    assert method == "POST"
    assert url.raw_path == "/v2.0/admin/members/42/credits"
    assert kwargs["headers"]["Content-Type"] == "application/json"
    assert kwargs["data"] == b'{"amount":10.10,"note":"hi","force":false}'
    assert kwargs["allow_redirects"] is False
