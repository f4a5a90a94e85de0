"""One pooled HTTP client per broker host, shared by every adapter instance in a process.

HTTP/2 where the broker offers it: over https the protocol is negotiated (ALPN); over plain
http (the simulator) we speak h2c with prior knowledge, since httpx silently falls back to
HTTP/1.1 on http:// unless HTTP/1.1 is switched off.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        if s.transport == "lean":
            client = httpx.AsyncClient(
                base_url=base_url,
                transport=LeanTransport(s.lean_max_connections, timeout=timeout),
                timeout=timeout,
                follow_redirects=False,
            )
        else:
            client = httpx.AsyncClient(
                base_url=base_url,
                http2=s.transport == "h2",
                http1=is_tls or s.transport == "h1",
                timeout=timeout,
                limits=httpx.Limits(
                    max_connections=s.max_connections, max_keepalive_connections=s.max_keepalive
                ),
                follow_redirects=False,
            )
        self._clients[base_url] = client
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
