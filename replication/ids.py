"""Deterministic client order ids (DESIGN §4).

An id is derived from (master order id, follower account id, action) so that any worker, after
any crash, computes the same id for the same leg: the broker's own client-id uniqueness then
becomes a second guard against duplicates. Ids are 20 characters of [0-9A-Za-z], which fits
every broker we target (Kite's `tag` is the tightest at 20 alphanumerics).
"""

from __future__ import annotations

import hashlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CLIENT_ORDER_ID_LENGTH = 20
# 20 base62 digits carry 119 bits; we keep the top bits of a SHA-256 digest.
_SPACE = len(ALPHABET) ** CLIENT_ORDER_ID_LENGTH


def client_order_id(master_order_id: str, follower_account_id: str, action: str) -> str:
    """The broker client order id of one leg; same inputs give the same id."""
    if not master_order_id or not follower_account_id or not action:
        raise ValueError("master_order_id, follower_account_id and action are required")
    material = "\x1f".join(("copytrade.v1", master_order_id, follower_account_id, action))
    number = int.from_bytes(hashlib.sha256(material.encode()).digest(), "big") % _SPACE
    digits = []
    for _ in range(CLIENT_ORDER_ID_LENGTH):
        number, remainder = divmod(number, len(ALPHABET))
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits))
