"""The blocking client (``inveterate_async.sync``) against the threaded sandbox: from plain
threads, a WSGI view, and a real process interrupted with Ctrl-C (SIGINT)."""

from __future__ import annotations

import gc
import io
import json
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from inveterate_async import (
    AdjustmentState,
    BadRequestError,
    CreditAdjustment,
    LedgerPage,
    MemberFinished,
    NotFoundError,
)
from inveterate_async.sync import InveterateClient
from inveterate_async.testing import Sandbox, ThreadedSandbox

from .cli_support import wait_until

KEY = "sk_sync_test-SECRET"


@pytest.fixture
def sandbox() -> Iterator[ThreadedSandbox]:
    exists = {str(n) for n in range(1, 11)} | {"42"}
    with Sandbox(api_key=KEY, members_exist=exists.__contains__).start_in_thread() as served:
        served.add_credits("42", ["10.00", "-2.50", "7"])
        yield served


def client_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "inveterate-sync-client"]


@pytest.fixture
def client(sandbox: ThreadedSandbox) -> Iterator[InveterateClient]:
    with InveterateClient(KEY, base_url=sandbox.base_url) as blocking:
        yield blocking


def test_it_reads_and_writes_with_the_async_clients_results_and_errors(
    client: InveterateClient, sandbox: ThreadedSandbox
) -> None:
    page = client.get_credits_page("42", limit=2)
    assert [c.amount for c in page.credits] == [Decimal("10.00"), Decimal("-2.50")]
    assert [c.amount for c in client.iter_credits("42")] == [Decimal(10), Decimal("-2.5"), 7]
    assert [len(p.credits) for p in client.iter_credit_pages("42", page_size=2)] == [2, 1]
    result = client.create_credit("42", "1.25", note="sync")
    assert Decimal(str(result.data["amount"])) == Decimal("1.25")
    assert sandbox.balance("42") == Decimal("15.75")
    with pytest.raises(NotFoundError):
        client.get_credits_page("404")
    with pytest.raises(ValueError, match="page_size"):
        client.iter_credits("42", page_size=0)  # checked at the call, as the async one
    wrong = InveterateClient("wrong-key", base_url=sandbox.base_url)
    try:
        with pytest.raises(BadRequestError):
            wrong.with_options(max_retries=0).create_credit("42", "1")
    finally:
        wrong.close()
    assert sandbox.balance("42") == Decimal("15.75")


def test_many_threads_share_one_client_and_its_one_thread(
    client: InveterateClient, sandbox: ThreadedSandbox
) -> None:
    errors: list[BaseException] = []

    def grant(member: int) -> None:
        try:
            for _ in range(10):
                client.create_credit(str(member), "1.00", note=f"thread {member}")
        except BaseException as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=grant, args=(n,)) for n in range(1, 9)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert [sandbox.balance(str(n)) for n in range(1, 9)] == [Decimal(10)] * 8
    assert len(client_threads()) == 1


def test_leaving_an_iterator_early_closes_it_and_reads_no_further(
    client: InveterateClient, sandbox: ThreadedSandbox
) -> None:
    sandbox.reset_stats()
    for credit in client.iter_credits("42", page_size=1):
        assert credit.amount == Decimal(10)
        break
    gets = [r for r in sandbox.requests if r.method == "GET"]
    assert len(gets) == 1
    pages = client.iter_credit_pages("42", page_size=1)
    next(pages)
    pages.close()  # an explicit close, as a dropped iterator gets
    assert len([r for r in sandbox.requests if r.method == "GET"]) == 2


def test_iter_credits_many_streams_events_and_collects_failures(
    client: InveterateClient,
) -> None:
    for member in ("1", "2", "3"):
        client.create_credit(member, "5")
    with client.iter_credits_many(["1", "2", "3", "404"], on_error="collect") as stream:
        seen = sorted((str(member), credit.amount) for member, credit in stream)
    assert seen == [("1", Decimal(5)), ("2", Decimal(5)), ("3", Decimal(5))]
    assert [(f.customer_id, type(f.error)) for f in stream.failures] == [("404", NotFoundError)]
    with client.iter_credits_many(["1", "2"]) as stream:
        kinds = [type(event) for event in stream.events()]
    assert kinds.count(LedgerPage) == 2
    assert kinds.count(MemberFinished) == 2


def test_apply_credits_blocks_until_the_batch_is_done(
    client: InveterateClient, sandbox: ThreadedSandbox, tmp_path: Path
) -> None:
    batch = [CreditAdjustment(f"gold:{n}", str(n), "5.00", note="Gold") for n in (1, 2, 3)]
    where: set[str] = set()
    report = client.apply_credits(
        batch,
        tmp_path / "j.sqlite",
        on_progress=lambda row: where.add(threading.current_thread().name),
    )
    assert report.all_applied
    assert report.counts[AdjustmentState.APPLIED] == 3
    assert [sandbox.balance(str(n)) for n in (1, 2, 3)] == [Decimal(5)] * 3
    assert where == {"inveterate-sync-client"}  # on_progress runs on the client's thread
    again = client.apply_credits(batch, tmp_path / "j.sqlite")
    assert again.all_applied
    assert [sandbox.balance(str(n)) for n in (1, 2, 3)] == [Decimal(5)] * 3


def test_a_wsgi_view_uses_one_module_level_client(sandbox: ThreadedSandbox) -> None:
    shared = InveterateClient(KEY, base_url=sandbox.base_url)

    def balance_view(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        member = environ["PATH_INFO"].strip("/")
        total = sum((c.amount for c in shared.iter_credits(member)), Decimal(0))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"member": member, "balance": str(total)}).encode()]

    answers: dict[str, Any] = {}

    def request(member: str) -> None:
        environ: dict[str, Any] = {"PATH_INFO": f"/{member}", "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        body = b"".join(balance_view(environ, lambda status, headers: None))
        answers[member] = json.loads(body)

    try:
        views = [threading.Thread(target=request, args=("42",)) for _ in range(6)]
        for view in views:
            view.start()
        for view in views:
            view.join()
    finally:
        shared.close()
    assert answers == {"42": {"member": "42", "balance": "14.50"}}


def test_close_leaves_no_thread_connection_or_warning(sandbox: ThreadedSandbox) -> None:
    before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        blocking = InveterateClient(KEY, base_url=sandbox.base_url)
        assert len(list(blocking.iter_credits("42"))) == 3
        derived = blocking.with_options(max_retries=0)
        derived.close()  # a derived client leaves the connections to its parent
        assert derived.get_credits_page("42").credits
        blocking.close()
        blocking.close()
        del blocking, derived
        gc.collect()
    assert set(threading.enumerate()) == before
    assert [str(w.message) for w in caught] == []
    closed = InveterateClient(KEY, base_url=sandbox.base_url)
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        closed.get_credits_page("42")


def test_bad_settings_fail_at_construction_and_leave_no_thread() -> None:
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="max_retries"):
        InveterateClient(KEY, base_url="http://127.0.0.1:9/v2.0", max_retries=-1)
    assert set(threading.enumerate()) == before


CTRL_C = textwrap.dedent(
    """
    import sys, threading
    from inveterate_async.sync import InveterateClient

    client = InveterateClient(sys.argv[1], base_url=sys.argv[2], max_retries=0)
    print("calling", flush=True)
    try:
        client.get_credits_page("slow")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    client.close()
    alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    print("threads left:", alive, flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_cancels_the_request_in_flight(sandbox: ThreadedSandbox) -> None:
    sandbox.fail_next(200, method="GET", customer_id="slow", delay=60)
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, KEY, sandbox.base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "calling\n"
        wait_until(lambda: sandbox.call(lambda: sandbox.sandbox.in_flight) == 1, what="request")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out.splitlines() == ["interrupted", "threads left: []"]
    assert "Unclosed" not in err  # the cancelled request's connection was closed cleanly
