"""Webhook pieces without the stack: destination checks, signatures, backoff, cursors."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime

import pytest

from clients.copytrade_client import verify_signature
from services.api.routers.history import InvalidCursor, decode_cursor, encode_cursor
from services.app.webhook_delivery import sign
from services.infra.addresses import AddressRefused, check_destination
from services.infra.db.repositories.history import PageKey
from services.infra.webhook_settings import WebhookSettings


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://10.1.2.3/x",
        "http://192.168.0.10/x",
        "http://172.16.5.4/x",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
        "http://100.64.0.1/x",  # carrier-grade NAT
    ],
)
async def test_production_refuses_private_and_loopback_destinations(url: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        await check_destination(url, allow_private=False)
    assert refused.value.code == "webhook_address_refused"
    await check_destination(url, allow_private=True)  # development: a local receiver is fine


async def test_public_addresses_pass_and_odd_urls_do_not() -> None:
    await check_destination("https://8.8.8.8/hook", allow_private=False)
    for url in (
        "ftp://8.8.8.8/x",
        "http:///x",
        "https://user:pw@8.8.8.8/",
        "http://8.8.8.8:99999/",
    ):
        with pytest.raises(AddressRefused) as refused:
            await check_destination(url, allow_private=True)
        assert refused.value.code == "webhook_url_invalid"


def test_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    now = int(time.time())
    body = b'{"type":"leg.failed"}'
    signature = sign("whsec_test", now, body)
    expected = hmac.new(b"whsec_test", f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == "v1=" + expected
    assert verify_signature("whsec_test", str(now), body, signature)
    assert not verify_signature("whsec_other", str(now), body, signature)
    assert not verify_signature("whsec_test", str(now), body + b" ", signature)
    old = now - 3600
    assert not verify_signature("whsec_test", str(old), body, sign("whsec_test", old, body))


def test_backoff_doubles_up_to_its_cap() -> None:
    hooks = WebhookSettings.from_env(
        {"COPYTRADE_WEBHOOK_BACKOFF_S": "2", "COPYTRADE_WEBHOOK_BACKOFF_MAX_S": "10"}
    )
    assert [hooks.backoff(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]
    assert WebhookSettings.from_env({}).max_attempts == 8


def test_cursors_round_trip_and_refuse_forgeries() -> None:
    key = PageKey(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid.uuid4())
    assert decode_cursor(encode_cursor(key)) == key
    assert decode_cursor("") is None
    for bad in ("not-a-cursor", "MjAyNg", encode_cursor(key)[:-4]):
        with pytest.raises(InvalidCursor):
            decode_cursor(bad)
