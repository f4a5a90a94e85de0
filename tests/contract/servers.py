"""Loopback servers for the official-SDK tests: the real simulator in its own process, and a
recording HTTP server that answers like a broker and keeps every request it saw.

The SDKs are synchronous (requests), so both are real sockets on 127.0.0.1, never a mock
transport; nothing here reaches beyond loopback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from brokers.http import H2Client, HttpSettings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(probe: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `probe` until it holds (no fixed sleep: it returns as soon as it does)."""
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@contextmanager
def simulator_process(log_path: Path) -> Iterator[str]:
    """`python -m brokers.sim` on a free loopback port; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "brokers.sim", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def serving() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"simulator exited: {log_path.read_text()[-2000:]}")
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(serving, 30, "simulator did not start")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived on the wire."""

    method: str
    path: str
    query: str  # raw, as sent (order and encoding preserved)
    body: str  # raw, as sent
    headers: dict[str, str]  # names lower-cased

    @property
    def query_params(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)

    @property
    def body_params(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body, keep_blank_values=True)

    @property
    def params(self) -> list[tuple[str, str]]:
        """Query and form parameters together, in the order they were sent."""
        return self.query_params + self.body_params


Responder = Callable[[Recorded], tuple[int, Any]]


@dataclass
class RecordingServer:
    """An HTTP/1.1 server on loopback that answers through `respond` and records requests."""

    respond: Responder
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def take(self) -> list[Recorded]:
        taken, self.requests = self.requests, []
        return taken


@contextmanager
def recording_server(respond: Responder) -> Iterator[RecordingServer]:
    recorder = RecordingServer(respond)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            parts = urlsplit(self.path)
            recorded = Recorded(
                method=self.command,
                path=parts.path,
                query=parts.query,
                body=body,
                headers={k.lower(): v for k, v in self.headers.items()},
            )
            with lock:
                recorder.requests.append(recorded)
            status, answer = recorder.respond(recorded)
            payload = b"" if status == 204 else json.dumps(answer).encode()
            self.send_response(status)
            if payload:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# The adapters' clients the SDK comparisons run over: httpx (what tests hand adapters) and the
# production pool's client (pyreqwest; HTTP/1.1 here, since the recording server speaks it).
ADAPTER_CLIENTS = ["httpx", "production"]


@asynccontextmanager
async def adapter_http(kind: str, url: str) -> AsyncIterator[Any]:
    if kind == "httpx":
        async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
            yield client
        return
    client = H2Client(url, HttpSettings(h2c=False))
    try:
        yield client
    finally:
        await client.aclose()
