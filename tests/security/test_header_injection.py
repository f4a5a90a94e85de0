"""Header injection across tenants (issue 11): a credential with CR/LF in it once became a
second request on a shared HTTP/1.1 keep-alive connection. Credentials are refused at the edge
(tests/security/test_accounts.py, tests/unit/test_broker_descriptors.py); below that, both
broker transports refuse control characters in header values themselves, so nothing is
smuggled even if a bad value got through. Against a real recording HTTP/1.1 server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pyreqwest.exceptions as rq
import pytest

from brokers.http import H2Client, HttpSettings
from tests.contract.servers import RecordingServer, recording_server

SMUGGLING = "PK1\r\nContent-Length: 0\r\n\r\nGET /v2/positions HTTP/1.1\r\nX-Evil: 1"


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    with recording_server(lambda recorded: (200, {"ok": True})) as server:
        yield server


@pytest.mark.parametrize("transport", ["reqwest", "httpx"])
async def test_no_transport_sends_a_header_value_with_control_characters(
    recorder: RecordingServer, transport: str
) -> None:
    # Both over HTTP/1.1 with keep-alive, where the original attack worked (the pool's httpx
    # client speaks HTTP/2 to plain-http hosts; its header checks are httpx's own either way).
    client: H2Client | httpx.AsyncClient = (
        H2Client(recorder.url, HttpSettings(h2c=False))
        if transport == "reqwest"
        else httpx.AsyncClient(base_url=recorder.url)
    )
    try:
        for bad in (SMUGGLING, "k\rx", "k\nx", "k\x00x"):
            with pytest.raises((ValueError, httpx.HTTPError, rq.PyreqwestError)):
                await client.request("GET", "/v2/account", headers={"APCA-API-KEY-ID": bad})
        fine = await client.request("GET", "/v2/account", headers={"APCA-API-KEY-ID": "PK1"})
        assert fine.status_code == 200
    finally:
        await client.aclose()
    recorded = recorder.take()
    assert [(r.method, r.path) for r in recorded] == [("GET", "/v2/account")]
    assert recorded[0].headers["apca-api-key-id"] == "PK1"
    assert "x-evil" not in recorded[0].headers
