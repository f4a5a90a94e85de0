"""One pooled HTTP client per broker host, shared by every adapter instance in a process.

HTTP/2 where the broker offers it: over https the protocol is negotiated (ALPN); over plain
http (the simulator) we speak h2c with prior knowledge, since httpx silently falls back to
HTTP/1.1 on http:// unless HTTP/1.1 is switched off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from brokers.lean import LeanTransport


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
        return await self._send_direct(method, url, content, data, json, params, headers)

    async def _send_direct(
        self, method: str, url: str, content: Any, data: Any, json: Any, params: Any, headers: Any
    ) -> httpx.Response:
        """A plain call (a path on the base URL) straight to the transport, read in full."""
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
