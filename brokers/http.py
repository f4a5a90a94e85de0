"""One pooled HTTP client per broker host and process, shared by every adapter instance.

HTTP/2 where the broker offers it: over https it is negotiated (ALPN, HTTP/1.1 otherwise); over
plain http (the simulator) it is spoken with prior knowledge (h2c).

Adapters are written against `HttpApi`: the part of httpx.AsyncClient's API they use (`request`
with a path, a JSON or form body, params and headers; an answer with `status_code`,
`is_success`, `headers`, `json()`, `text`; failures raised as httpx's exceptions). Any
httpx.AsyncClient is one (tests hand adapters MockTransport and ASGITransport clients). In
production the pool hands out `H2Client`: the same calls on pyreqwest (Rust reqwest/hyper), whose
client CPU per request is a fifth of httpx's HTTP/2 stack at the raw-client floor (README,
"Transports"). `COPYTRADE_BROKER_TRANSPORT=httpx` switches back to httpx's own HTTP/2 stack.
"""

from __future__ import annotations

import json as jsonlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol

import httpx
from pyreqwest import exceptions as rq
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.http import HeaderMap
from pyreqwest.response import Response


class HttpReply(Protocol):
    """What an adapter reads from an answer (httpx.Response is one)."""

    @property
    def status_code(self) -> int: ...
    @property
    def is_success(self) -> bool: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


class HttpApi(Protocol):
    """What an adapter calls (httpx.AsyncClient is one): `url` is a path on the base URL."""

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpReply: ...


Transport = Literal["reqwest", "httpx"]


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    write_timeout_s: float = 5.0
    pool_timeout_s: float = 5.0
    # httpx only: HTTP/2 multiplexes (pyreqwest opens what the server's stream limit needs).
    max_connections: int = 32
    # "reqwest": pyreqwest (default); "httpx": httpx's own HTTP/2 stack (httpcore + h2).
    # Chosen by measurement (README, "Transports").
    transport: Transport = "reqwest"
    # PEM file of extra trusted roots (the simulator's self-signed certificate under --tls).
    ca_file: str | None = None
    # reqwest over http://: HTTP/2 with prior knowledge (the simulator), or HTTP/1.1 (a plain
    # HTTP/1.1 server, e.g. a recording proxy). Over https ALPN decides.
    h2c: bool = True


_USER_AGENT = "copytrade"

# pyreqwest's failures as httpx's, so `brokers.transport` reads them the same way. pyreqwest's
# own classes are not enough for that: it calls a request that reached the server and then lost
# its connection a ConnectError, and a timeout waiting for the answer a ConnectTimeoutError
# (tests/unit/test_broker_client.py shows both). So "never sent" is decided by hyper's cause
# chain: only a failure while connecting ("client error (Connect)") or while waiting for a pool
# slot left nothing on the wire; every other failure is an unknown outcome, looked up by client
# order id before anything is sent again.
_CONNECTING = "client error (Connect)"


def _as_httpx(exc: rq.PyreqwestError) -> httpx.TransportError:
    message = str(exc)
    if isinstance(exc, rq.PoolTimeoutError):
        return httpx.PoolTimeout(message)
    causes = exc.details.get("causes") if isinstance(exc, rq.DetailedPyreqwestError) else None
    if any(cause.get("message") == _CONNECTING for cause in causes or ()):
        if isinstance(exc, rq.RequestTimeoutError):
            return httpx.ConnectTimeout(message)
        return httpx.ConnectError(message)
    if isinstance(exc, rq.RequestTimeoutError):
        return httpx.ReadTimeout(message)
    return httpx.RemoteProtocolError(message)


class Reply:
    """An answer read whole: status, headers (case-insensitive, as received) and body bytes."""

    __slots__ = ("_response", "content", "status_code")

    def __init__(self, response: Response, content: bytes) -> None:
        self.status_code = response.status
        self._response = response
        self.content = content

    @property
    def http_version(self) -> str:
        return self._response.version

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def fixed_headers(http: HttpApi, headers: Mapping[str, str]) -> Mapping[str, str]:
    """Headers an adapter sends on every call (its credentials), made once per adapter in the
    form its client takes fastest: a pyreqwest HeaderMap for `H2Client` (no dict → header map
    conversion per request), the dict itself for anything else (httpx)."""
    return HeaderMap(headers) if isinstance(http, H2Client) else headers


class H2Client:
    """The pool's client for one broker host: `HttpApi` on one pyreqwest client.

    Per call it builds one pyreqwest request (the path joined to the base URL in Rust, headers
    passed as the adapter's own HeaderMap, see `fixed_headers`) and reads the body whole; no
    httpx Request, Response or Headers object is made.
    """

    def __init__(self, base_url: str, settings: HttpSettings) -> None:
        s = settings
        builder = (
            ClientBuilder()
            .base_url(base_url.rstrip("/") + "/")
            .user_agent(_USER_AGENT)
            .connect_timeout(timedelta(seconds=s.connect_timeout_s))
            .read_timeout(timedelta(seconds=s.read_timeout_s))
            .pool_timeout(timedelta(seconds=s.pool_timeout_s))
            .follow_redirects(False)
            .default_cookie_store(False)
            .tcp_nodelay(True)
            .brotli(False)  # offer what httpx and the SDKs offer: gzip, deflate
            .zstd(False)
            .no_proxy()
        )
        if base_url.startswith("http://"):
            if s.h2c:
                builder = builder.http2_prior_knowledge()
        else:
            builder = builder.http2(True)  # offered in ALPN (pyreqwest's default is HTTP/1.1)
        if s.ca_file:
            with open(s.ca_file, "rb") as pem:
                builder = builder.add_root_certificate_pem(pem.read())
        self._client: Client = builder.build()
        self.base_url = base_url

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        builder = self._client.request(method, url.lstrip("/"))
        if headers:
            builder = builder.headers(headers)
        if params:
            builder = builder.query(params)
        if json is not None:
            builder = builder.body_json(json)
        elif data is not None:
            builder = builder.form(data)
        try:
            response = await builder.build().send()
            content = await response.bytes()
        except rq.PyreqwestError as exc:
            raise _as_httpx(exc) from exc
        return Reply(response, content.to_bytes())

    async def aclose(self) -> None:
        await self._client.close()


class HttpClientPool:
    """One client per broker base URL and process."""

    def __init__(self, settings: HttpSettings | None = None) -> None:
        self._settings = settings or HttpSettings()
        self._clients: dict[str, H2Client | httpx.AsyncClient] = {}

    def client(self, base_url: str) -> HttpApi:
        base_url = base_url.rstrip("/")
        existing = self._clients.get(base_url)
        if existing is not None:
            return existing
        s = self._settings
        client: H2Client | httpx.AsyncClient
        if s.transport == "reqwest":
            client = H2Client(base_url, s)
        else:
            client = httpx.AsyncClient(
                base_url=base_url,
                transport=httpx.AsyncHTTPTransport(
                    http2=True,
                    # http:// speaks h2c with prior knowledge only with HTTP/1.1 switched off
                    http1=base_url.startswith("https://"),
                    verify=ssl.create_default_context(cafile=s.ca_file) if s.ca_file else True,
                    limits=httpx.Limits(
                        max_connections=s.max_connections,
                        max_keepalive_connections=s.max_connections,
                    ),
                ),
                timeout=httpx.Timeout(
                    connect=s.connect_timeout_s,
                    read=s.read_timeout_s,
                    write=s.write_timeout_s,
                    pool=s.pool_timeout_s,
                ),
                headers={"user-agent": _USER_AGENT},
                follow_redirects=False,
            )
        self._clients[base_url] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
