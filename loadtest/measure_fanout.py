"""Measure POST /v1/orders → all legs settled against a running stack (`make run`).

Signs in as the demo master, places N market orders one after another, and for each reads
`fanout_ms` (master order created → last leg settled, measured by the database clock) and the
client-side time from sending the POST until GET /v1/orders/{id} reports `replicated`.

    .venv/bin/python -m loadtest.measure_fanout --orders 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx

from loadtest.stack import MASTER_EMAIL, MASTER_PASSWORD


async def main(api_url: str, orders: int, qty: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        token = (
            await http.post(
                "/v1/auth/token", json={"email": MASTER_EMAIL, "password": MASTER_PASSWORD}
            )
        ).json()["access_token"]
        headers = {"authorization": f"Bearer {token}"}
        account_id = (await http.get("/v1/accounts", headers=headers)).json()[0]["account_id"]
        server_ms: list[float] = []
        client_ms: list[float] = []
        for _ in range(orders):
            started = time.perf_counter()
            response = await http.post(
                "/v1/orders",
                headers=headers,
                json={
                    "client_order_id": uuid.uuid4().hex,
                    "account_id": account_id,
                    "symbol": "AAPL",
                    "side": "buy",
                    "qty": qty,
                    "type": "market",
                    "time_in_force": "day",
                },
            )
            response.raise_for_status()
            order_id = response.json()["order_id"]
            while True:
                body = (await http.get(f"/v1/orders/{order_id}", headers=headers)).json()
                if body["status"] == "replicated":
                    break
                await asyncio.sleep(0.005)
            client_ms.append((time.perf_counter() - started) * 1000)
            server_ms.append(body["fanout_ms"])
            print(
                f"order {order_id}: {body['legs']['total']} legs {body['legs']['by_status']} "
                f"fanout {body['fanout_ms']:.1f} ms (client saw {client_ms[-1]:.1f} ms)"
            )
            await asyncio.sleep(0.5)
        print(
            f"median over {orders}: fanout {statistics.median(server_ms):.1f} ms, "
            f"client {statistics.median(client_ms):.1f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--orders", type=int, default=5)
    parser.add_argument("--qty", default="1")
    args = parser.parse_args()
    asyncio.run(main(args.api, args.orders, args.qty))
