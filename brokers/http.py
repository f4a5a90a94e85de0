"""One pooled HTTP client per broker host, shared by every adapter instance in a process.

HTTP/2 where the broker offers it: over https the protocol is negotiated (ALPN); over plain
http (the simulator) we speak h2c with prior knowledge, since httpx silently falls back to
HTTP/1.1 on http:// unless HTTP/1.1 is switched off.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import httpx
from pyreqwest import exceptions as rq
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.http import HeaderMap

from brokers.lean import LeanTransport


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


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    write_timeout_s: float = 5.0
    pool_timeout_s: float = 5.0
    max_connections: int = 32
    max_keepalive: int = 32
    # "lean": our HTTP/1.1 keep-alive transport (brokers/lean.py); "h2": httpx's HTTP/2;
    # "h1": httpx's HTTP/1.1 pool. Chosen by measurement (README, "Performance").
    transport: str = "lean"
    lean_max_connections: int = 512
    ca_file: str | None = None


_USER_AGENT = "copytrade"
_URL_CACHE_SIZE = 1024


class BrokerClient(httpx.AsyncClient):
    """An httpx client whose plain calls (a path on the base URL, a body, params, headers) go
    straight to the transport.

    httpx's client layer costs more CPU per broker request than our transport does (URL merging,
    a cookie jar round trip per response, auth and redirect plumbing). Broker APIs authenticate
    by header, never set cookies we need, and are never followed through redirects, so the
    adapters' calls skip all of that; anything else (absolute URLs, files, per-call auth,
    timeouts or extensions) takes httpx's full path unchanged.
    """

    def __init__(
        self, *, base_url: str, transport: httpx.AsyncBaseTransport, timeout: httpx.Timeout
    ) -> None:
        super().__init__(
            base_url=base_url, transport=transport, timeout=timeout, follow_redirects=False
        )
        self._direct_base = base_url.rstrip("/")
        self._direct = transport
        self._timeouts = timeout.as_dict()
        # Parsed URLs by path: parsing one costs as much as the rest of building a request.
        # Bounded: paths that carry ids (cancels, lookups) stop being remembered at the cap.
        self._urls: dict[str, httpx.URL] = {}

    async def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        data: Any = None,
        files: Any = None,
        json: Any = None,
        params: Any = None,
        headers: Any = None,
        cookies: Any = None,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
        timeout: Any = httpx.USE_CLIENT_DEFAULT,  # noqa: ASYNC109 (httpx.AsyncClient.request)
        extensions: Any = None,
    ) -> httpx.Response:
        plain = (
            isinstance(url, str)
            and url.startswith("/")
            and files is None
            and cookies is None
            and extensions is None
            and auth is httpx.USE_CLIENT_DEFAULT
            and follow_redirects is httpx.USE_CLIENT_DEFAULT
            and timeout is httpx.USE_CLIENT_DEFAULT
        )
        if not plain:
            return await super().request(
                method,
                url,
                content=content,
                data=data,
                files=files,
                json=json,
                params=params,
                headers=headers,
                cookies=cookies,
                auth=auth,
                follow_redirects=follow_redirects,
                timeout=timeout,
                extensions=extensions,
            )
        assert isinstance(url, str)  # `plain` checked it
        target = self._urls.get(url)
        if target is None:
            target = httpx.URL(f"{self._direct_base}{url}")
            if len(self._urls) < _URL_CACHE_SIZE:
                self._urls[url] = target
        request = httpx.Request(
            method,
            target,
            content=content,
            data=data,
            json=json,
            params=params,
            headers={"user-agent": _USER_AGENT, **(headers or {})},
            extensions={"timeout": self._timeouts},
        )
        response = await self._direct.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response


# pyreqwest's failures as httpx's, so `brokers.transport` reads them the same way: connect
# failures and pool waits were never sent; everything after (read, write, a broken stream) is
# an unknown outcome. Most specific first.
_ERRORS: tuple[tuple[type[rq.PyreqwestError], type[httpx.TransportError]], ...] = (
    (rq.ConnectTimeoutError, httpx.ConnectTimeout),
    (rq.PoolTimeoutError, httpx.PoolTimeout),
    (rq.ReadTimeoutError, httpx.ReadTimeout),
    (rq.WriteTimeoutError, httpx.WriteTimeout),
    (rq.RequestTimeoutError, httpx.ReadTimeout),
    (rq.ConnectError, httpx.ConnectError),
    (rq.ReadError, httpx.ReadError),
    (rq.WriteError, httpx.WriteError),
    (rq.NetworkError, httpx.NetworkError),
)


def _as_httpx(exc: rq.PyreqwestError) -> httpx.TransportError:
    for theirs, ours in _ERRORS:
        if isinstance(exc, theirs):
            return ours(str(exc))
    return httpx.RemoteProtocolError(str(exc))  # sent, then something broke: unknown


class Reply:
    """An answer read whole: status, headers (case-insensitive, as received) and body bytes."""

    __slots__ = ("_headers", "content", "status_code")

    def __init__(self, status_code: int, headers: HeaderMap, content: bytes) -> None:
        self.status_code = status_code
        self._headers = headers
        self.content = content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class H2Client:
    """The pool's client for one broker host: `HttpApi` on one pyreqwest client.

    Per call it builds one pyreqwest request (the path joined to the base URL in Rust, headers
    passed as the adapter's own dict) and reads the body whole; no httpx Request, Response or
    Headers object is made.
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
            .no_proxy()
        )
        if base_url.startswith("http://"):
            builder = builder.http2_prior_knowledge()
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
        return Reply(response.status, response.headers, content.to_bytes())

    async def aclose(self) -> None:
        await self._client.close()


class HttpClientPool:
    def __init__(self, settings: HttpSettings | None = None) -> None:
        self._settings = settings or HttpSettings()
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, base_url: str) -> httpx.AsyncClient:
        base_url = base_url.rstrip("/")
        existing = self._clients.get(base_url)
        if existing is not None:
            return existing
        s = self._settings
        is_tls = base_url.startswith("https://")
        timeout = httpx.Timeout(
            connect=s.connect_timeout_s,
            read=s.read_timeout_s,
            write=s.write_timeout_s,
            pool=s.pool_timeout_s,
        )
        transport: httpx.AsyncBaseTransport
        if s.transport == "lean":
            transport = LeanTransport(s.lean_max_connections, timeout=timeout)
        else:
            transport = httpx.AsyncHTTPTransport(
                http2=s.transport == "h2",
                http1=is_tls or s.transport == "h1",
                limits=httpx.Limits(
                    max_connections=s.max_connections, max_keepalive_connections=s.max_keepalive
                ),
            )
        client = BrokerClient(base_url=base_url, transport=transport, timeout=timeout)
        self._clients[base_url] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
