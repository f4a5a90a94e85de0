"""The broker error taxonomy. Every adapter maps its failures onto exactly these four.

BrokerError
├── Retryable(retry_after)  the broker did not take the order; sending again later is safe
├── Rejected(reason)        the broker refused the order; final
├── Unknown                 the outcome is not known (timeout, 5xx): look up before resending
└── Fatal                   misconfiguration (bad credentials, bad endpoint): stop and alert
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of the taxonomy; `code` is machine-readable, `message` human-readable."""

    def __init__(self, message: str, *, code: str = "broker_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Retryable(BrokerError):
    def __init__(self, message: str, *, retry_after: float, code: str = "retryable") -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Rejected(BrokerError):
    def __init__(self, reason: str, *, code: str = "rejected") -> None:
        super().__init__(reason, code=code)
        self.reason = reason


class DuplicateClientOrderId(Rejected):
    """The broker already has an order with this client order id: look it up, never resend."""

    def __init__(self, reason: str = "client_order_id must be unique") -> None:
        super().__init__(reason, code="duplicate_client_order_id")


class Unknown(BrokerError):
    def __init__(self, message: str, *, code: str = "unknown") -> None:
        super().__init__(message, code=code)


class Fatal(BrokerError):
    def __init__(self, message: str, *, code: str = "fatal") -> None:
        super().__init__(message, code=code)


class NotFound(BrokerError):
    """A lookup found no such order at the broker."""

    def __init__(self, message: str = "order not found") -> None:
        super().__init__(message, code="not_found")
