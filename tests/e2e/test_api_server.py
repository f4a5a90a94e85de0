"""The API's server bounds a request in time and its head in size (services/api/serving.py):
uvicorn alone bounds neither. Raw sockets against an API process of its own (request timeout 1 s,
the default 32 KiB cap, at most 3 connections and requests in flight), beside the e2e stack."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Iterator

import pytest
import websockets

from services.dev.embedded import free_port
from services.dev.processes import Child, stop_all
from tests.helpers import Api, Stack, wait_http, wait_until

REQUEST_TIMEOUT_S = 1.0
MAX_CONCURRENCY = 3  # connections and requests in flight; the tests here use one at a time


@pytest.fixture(scope="module")
def api_port(stack: Stack) -> Iterator[int]:
    port = free_port()
    env = {
        **stack.env,
        "COPYTRADE_API_PORT": str(port),
        "COPYTRADE_API_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S),
        "COPYTRADE_API_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
    }
    api = Child("api-guarded", "services.api", env, stack.log_dir / "api-guarded.log")
    api.start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, [api])
        yield port
    finally:
        stop_all([api])


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _response(sock: socket.socket) -> bytes:
    """One response: its head, then as many body bytes as its content-length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def _closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes the connection (recv returns b"")."""
    started = time.monotonic()
    while sock.recv(65536):
        pass
    return time.monotonic() - started


def test_a_head_over_the_cap_is_refused_with_431(api_port: int) -> None:
    with _connect(api_port) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 40_000 + b"\r\n\r\n"
        )
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_a_head_over_the_cap_sent_in_pieces_is_refused_too(api_port: int) -> None:
    """One header growing over several reads, never finished: refused once it passes the cap,
    not buffered until the deadline."""
    with _connect(api_port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ")
        for _ in range(8):
            time.sleep(0.05)
            if select.select([sock], [], [], 0)[0]:
                break  # answered: stop sending (more bytes to a closed socket draw a reset)
            sock.sendall(b"a" * 10_000)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_a_large_body_is_not_mistaken_for_a_large_head(api_port: int) -> None:
    """60 KiB of body (under the 64 KiB body limit) sent with its head in one write."""
    body = b'{"padding": "' + b"a" * 60_000 + b'"}'
    with _connect(api_port) as sock:
        sock.sendall(
            b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]  # no token: refused by the app


def test_a_head_that_never_ends_is_cut_off(api_port: int) -> None:
    with _connect(api_port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # a header now and then, never the blank line
            time.sleep(REQUEST_TIMEOUT_S / 4)
            sock.sendall(b"X-Slow: 1\r\n")
        assert _closed_after(sock) < REQUEST_TIMEOUT_S + 2


def test_a_body_that_never_ends_is_cut_off(api_port: int) -> None:
    with _connect(api_port) as sock:
        sock.sendall(
            b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        for _ in range(3):  # a byte now and then, never all 100
            time.sleep(REQUEST_TIMEOUT_S / 4)
            sock.sendall(b" ")
        assert _closed_after(sock) < REQUEST_TIMEOUT_S + 2


async def test_a_websocket_outlives_the_request_deadline(api: Api, api_port: int) -> None:
    """The deadline covers the upgrade request; the socket then lives as long as it is open."""
    _, token = await api.user("follower")
    ws_token = (await api.http.post("/v1/ws/token", headers=api.auth(token))).json()["token"]
    async with websockets.connect(
        f"ws://127.0.0.1:{api_port}/v1/ws",
        subprotocols=["copytrade.v1", ws_token],  # type: ignore[list-item]
        origin=f"http://127.0.0.1:{api_port}",  # type: ignore[arg-type]
        open_timeout=10,
    ) as socket_:
        await asyncio.sleep(REQUEST_TIMEOUT_S * 2.5)
        pong = await socket_.ping()
        await asyncio.wait_for(pong, 5)  # still open and answering


def test_a_connection_that_sends_nothing_is_closed(api_port: int) -> None:
    with _connect(api_port) as sock:
        assert _closed_after(sock) < REQUEST_TIMEOUT_S + 2


def test_a_kept_alive_connection_may_wait_between_requests(api_port: int) -> None:
    """The deadline covers a head once its first bytes arrive, not the pause before it (that is
    the keep-alive timeout's, 5 s)."""
    with _connect(api_port) as sock:
        for _ in range(2):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(REQUEST_TIMEOUT_S * 1.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 200 ")


def test_past_the_concurrency_limit_new_requests_get_503(api_port: int) -> None:
    idle = [_connect(api_port) for _ in range(MAX_CONCURRENCY - 1)]  # open, nothing sent yet
    try:
        with _connect(api_port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _read_all(sock).startswith(b"HTTP/1.1 503 ")
    finally:
        for sock in idle:
            sock.close()

    def served() -> bool:  # once the server has seen them go
        with _connect(api_port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return _read_all(sock).startswith(b"HTTP/1.1 200 ")

    wait_until(served, timeout_s=10, message="still 503 after the other connections closed")
