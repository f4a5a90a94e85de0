"""Chaos: an ingest API or sweeper killed mid-work, and a flood of malformed requests, never
cost a follower its copy nor give it two (issue 16).

Same truth as the other chaos modules: the simulator's own orders with its dedup off (a blind
resend would show as a duplicate); every test asserts 0 duplicates, 0 lost and every copy
filled within 30 s of the fault ending. The API runs as two uvicorn workers under their main
process, as in production. Sizes: COPYTRADE_CHAOS_FOLLOWERS (20) and COPYTRADE_CHAOS_ORDERS (2)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.dev.processes import Child
from tests.chaos.settings import FAST_RECOVERY
from tests.chaos.test_server_faults import Run, _children, _report, _zombie
from tests.helpers import Api, Stack, eventually, listening, wait_http

ORDERS = int(os.environ.get("COPYTRADE_CHAOS_ORDERS", "2"))
IN_FLIGHT = 20  # POSTs /v1/orders in flight when the API is killed
MALFORMED_PER_VALID = 10


@pytest.fixture(scope="module")
def stack(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        service_env,
        Path(tmp_path_factory.mktemp("process-chaos")),
        workers=1,
        overrides={
            "COPYTRADE_API_WORKERS": "2",
            **FAST_RECOVERY,
        },
    ).start()
    try:
        yield s
    finally:
        s.stop()


def _child(stack: Stack, name: str) -> Child:
    [child] = [c for c in stack.children if c.name == name]
    return child


async def _post_in_flight(
    run: Run, first_answer: asyncio.Event
) -> tuple[dict[str, str], list[str]]:
    """IN_FLIGHT POSTs at once: ({client_order_id: order_id} answered 202, ids unanswered)."""

    async def post(client_order_id: str) -> tuple[str, str | None]:
        try:
            response = await run.order(client_order_id)
        except httpx.HTTPError:
            return client_order_id, None
        first_answer.set()
        assert response.status_code in (202, 503), response.text
        return client_order_id, response.json()["order_id"] if response.status_code == 202 else None

    keys = [os.urandom(8).hex() for _ in range(IN_FLIGHT)]
    tasks = [asyncio.ensure_future(post(k)) for k in keys]
    return await _gather_answers(tasks)


async def _gather_answers(
    tasks: list[asyncio.Future[tuple[str, str | None]]],
) -> tuple[dict[str, str], list[str]]:
    answered: dict[str, str] = {}
    unanswered: list[str] = []
    for key, order_id in await asyncio.gather(*tasks):
        if order_id is None:
            unanswered.append(key)
        else:
            answered[key] = order_id
    return answered, unanswered


async def _kill_api_mid_flight(stack: Stack, victim: str) -> dict[str, Any]:
    """POST IN_FLIGHT orders and kill -9 the API's main process or one of its workers while
    they are in flight. The main process: its workers die with it and nothing of the old server
    keeps the port; the launcher restarts it. A worker: the main process (uvicorn's supervisor)
    replaces it and stays up. Then the client retries the unanswered POSTs with their
    client_order_id."""
    api_child = _child(stack, "api")
    port = int(stack.api_url.rsplit(":", 1)[1])
    api = Api(stack.api_url, stack.sim_url)
    try:
        run = await Run(api).setup()
        workers = _children(api_child.pid)
        assert len(workers) >= 2, workers
        main_pid = api_child.pid
        first_answer = asyncio.Event()
        flight = asyncio.ensure_future(_post_in_flight(run, first_answer))
        await first_answer.wait()  # one answered, the others on their way: the kill lands
        os.kill(main_pid if victim == "main" else workers[0], signal.SIGKILL)
        answered, unanswered = await flight
        if victim == "main":

            async def gone() -> bool:
                alive = [w for w in workers if Path(f"/proc/{w}").exists() and not _zombie(w)]
                return not alive and not listening(port)

            await eventually(gone, timeout_s=30, message="an orphan of the API keeps the port")
            api_child.start()  # the launcher's loop restarts a child that exited
        else:

            async def replaced() -> bool:
                now = _children(main_pid)
                return len(now) >= 2 and workers[0] not in now

            await eventually(replaced, timeout_s=30, message="the dead worker was not replaced")
            assert api_child.alive(), "the API's main process exited with its worker"
        await asyncio.to_thread(wait_http, f"{stack.api_url}/healthz", 60, [api_child])
        fault_ended = time.monotonic()
        retried = Counter[str]()
        for key in unanswered:  # the client retries each with the same client_order_id
            response = await run.order(key)
            assert response.status_code == 202, response.text
            retried[response.json()["order_id"]] += 1
        for key, order_id in answered.items():  # a retry of an answered one: the same order
            response = await run.order(key)
            assert response.json()["order_id"] == order_id, response.text
        assert len(run.accepted) == IN_FLIGHT, (len(run.accepted), answered, unanswered)
        numbers = await run.measure(fault_ended)
        numbers["api_202_before_kill"] = len(answered)
        numbers["api_unanswered"] = len(unanswered)
        return numbers
    finally:
        await api.aclose()


async def test_kill_the_api_main_process_with_posts_in_flight(stack: Stack) -> None:
    _report("kill -9 the API's main process", await _kill_api_mid_flight(stack, "main"))


async def test_kill_an_api_worker_with_posts_in_flight(stack: Stack) -> None:
    _report("kill -9 an API worker", await _kill_api_mid_flight(stack, "worker"))


def _malformed(token: str, account_id: str) -> list[tuple[str, dict[str, str], bytes]]:
    """(kind, headers, body) of requests POST /v1/orders must refuse with a 4xx."""
    auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    good = {
        "client_order_id": "k",
        "account_id": account_id,
        "symbol": "AAPL",
        "side": "buy",
        "qty": "1",
        "type": "market",
        "time_in_force": "day",
    }

    def body(**changes: Any) -> bytes:
        return json.dumps({**good, "client_order_id": os.urandom(8).hex(), **changes}).encode()

    return [
        ("bad JSON", auth, b'{"client_order_id": "x", "symbol": '),
        ("NUL in a field", auth, body(symbol="AA\u0000PL")),
        ("raw NUL bytes", auth, b"\x00" * 64),
        ("invalid UTF-8", auth, b'{"symbol": "\xff\xfe"}'),
        ("qty a list", auth, body(qty=[1])),
        ("side a number", auth, body(side=5)),
        ("JSON array", auth, b"[1, 2, 3]"),
        ("body over 64 KiB", auth, body(client_order_id="x" * 100_000)),
        ("bad token", {**auth, "authorization": "Bearer not.a.token"}, body()),
        ("no token", {"content-type": "application/json"}, body()),
    ]


async def test_malformed_requests_mixed_with_valid_orders(stack: Stack) -> None:
    """MALFORMED_PER_VALID malformed POSTs (ten kinds) around each valid order, all at once:
    every malformed one is a 4xx (no 5xx), every valid order copied exactly once."""
    api = Api(stack.api_url, stack.sim_url)
    try:
        run = await Run(api).setup()
        started = time.monotonic()
        kinds = _malformed(run.master_token, run.master_account)
        statuses: Counter[int] = Counter()
        semaphore = asyncio.Semaphore(20)

        async def bad(kind: str, headers: dict[str, str], content: bytes) -> None:
            async with semaphore:
                try:
                    response = await api.http.post("/v1/orders", headers=headers, content=content)
                except httpx.HTTPError as exc:
                    raise AssertionError(f"{kind}: {exc!r}") from exc
            statuses[response.status_code] += 1
            assert 400 <= response.status_code < 500, (kind, response.status_code, response.text)
            assert response.json()["error"]["code"], (kind, response.text)

        async def valid() -> None:
            async with semaphore:
                assert (await run.order()).status_code == 202

        batch: list[Any] = []
        for _ in range(max(ORDERS, 4)):
            batch.append(valid())
            batch.extend(bad(*kinds[i % len(kinds)]) for i in range(MALFORMED_PER_VALID))
        await asyncio.gather(*batch)
        numbers = await run.measure(time.monotonic())
        numbers["api_4xx"] = sum(statuses.values())
        numbers["api_statuses"] = dict(statuses)
        numbers["recovered_s"] = time.monotonic() - started
        _report("malformed requests mixed with valid ones", numbers)
    finally:
        await api.aclose()


async def test_kill_the_sweeper_during_a_broker_outage(stack: Stack) -> None:
    """Every follower's account answers 5xx for 10 s; once their copies are in doubt or
    `retrying` (the sweeper's to look up and retry) the sweeper is killed with SIGKILL, and
    restarted 3 s later as the launcher would: once the accounts answer again every copy is
    placed exactly once."""
    api = Api(stack.api_url, stack.sim_url)
    sweeper = _child(stack, "sweeper")
    try:
        run = await Run(api).setup()
        outage_started = time.monotonic()
        for follower in run.followers:
            account = follower["sim_account_id"]
            await api.sim.put(f"/sim/faults?account_id={account}", json={"error_rate": 1.0})
        for _ in range(ORDERS):
            assert (await run.order()).status_code == 202

        async def retrying() -> bool:
            follower = run.followers[-1]
            copies = (
                await api.http.get(
                    "/v1/copies",
                    params={"order_id": run.accepted[-1]},
                    headers=api.auth(follower["token"]),
                )
            ).json()
            return len(copies) == 1 and copies[0]["status"] in ("retrying", "unknown")

        await eventually(retrying, timeout_s=20, message="copies not in doubt")
        old_pid = sweeper.pid
        os.kill(old_pid, signal.SIGKILL)
        assert sweeper.wait(5)
        await asyncio.sleep(3.0)  # the sweeper stays dead for a while: the scenario
        sweeper.start()  # the launcher's loop restarts a child that exited
        assert sweeper.pid != old_pid
        await asyncio.sleep(max(0.0, 10.0 - (time.monotonic() - outage_started)))
        for follower in run.followers:
            account = follower["sim_account_id"]
            await api.sim.put(f"/sim/faults?account_id={account}", json={"error_rate": 0.0})
        numbers = await run.measure(time.monotonic())
        _report("kill -9 the sweeper during a follower outage", numbers)
        assert sweeper.alive()
    finally:
        await api.aclose()
