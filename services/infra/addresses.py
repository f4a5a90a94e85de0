"""Webhook destinations: http(s) URLs whose every address is public. In production, a host
that is, or resolves to, a private, loopback, link-local, multicast, reserved or unspecified
address is refused (checked when the webhook is created and again before every attempt, so a
name that later resolves inward is not called). Development may allow them (local receivers)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class AddressRefused(ValueError):
    def __init__(self, message: str, code: str = "webhook_address_refused") -> None:
        super().__init__(message)
        self.code = code


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_destination(url: str, allow_private: bool) -> None:
    """Raise AddressRefused unless `url` is an http(s) URL we may call."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused("the URL must be http(s)://host/…", "webhook_url_invalid")
    if parts.username or parts.password:
        raise AddressRefused("the URL must not carry credentials", "webhook_url_invalid")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise AddressRefused("the URL's port is not valid", "webhook_url_invalid") from None
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
    except OSError:
        raise AddressRefused(f"{parts.hostname} does not resolve") from None
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(_public(a) for a in addresses):
        raise AddressRefused(f"{parts.hostname} is not a public address")
