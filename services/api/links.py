"""OpenAPI links (issue 18): which answer's ids feed which operation, so clients and the
stateful Schemathesis run in the suite can chain calls (POST /v1/orders → GET /v1/orders/{id})."""

from __future__ import annotations

from typing import Any


def _ref(method: str, path: str) -> str:
    """An operationRef: a JSON pointer into this document's paths."""
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method.lower()


def links(status: int, *targets: tuple[str, str, str, dict[str, str]]) -> dict[int | str, Any]:
    """`responses` for a route decorator: each target is (link name, method, path, parameters
    as runtime expressions, e.g. {"order_id": "$response.body#/order_id"})."""
    return {
        status: {
            "links": {
                name: {"operationRef": _ref(method, path), "parameters": parameters}
                for name, method, path, parameters in targets
            }
        }
    }


_ORDER = {"order_id": "$response.body#/order_id"}
_SUBSCRIPTION = {"subscription_id": "$response.body#/subscription_id"}

ORDER_ACCEPTED = links(
    202,
    ("GetOrder", "GET", "/v1/orders/{order_id}", _ORDER),
    ("ReplaceOrder", "PATCH", "/v1/orders/{order_id}", _ORDER),
    ("CancelOrder", "POST", "/v1/orders/{order_id}/cancel", _ORDER),
    ("OrderCopies", "GET", "/v1/copies", _ORDER),
)
ORDER_REPLACED = links(
    202,
    ("GetOrder", "GET", "/v1/orders/{order_id}", _ORDER),
    ("CancelOrder", "POST", "/v1/orders/{order_id}/cancel", _ORDER),
)
SUBSCRIPTION_CREATED = links(
    201,
    ("UpdateSubscription", "PATCH", "/v1/subscriptions/{subscription_id}", _SUBSCRIPTION),
    ("EndSubscription", "DELETE", "/v1/subscriptions/{subscription_id}", _SUBSCRIPTION),
)
