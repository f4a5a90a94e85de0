"""Broker credentials encrypted at rest: AES-256-GCM, bound to the account id, key rotation.

Ciphertext layout: b"v1." + key id + b"." + 12-byte nonce + ciphertext||tag. The account id
is the associated data, so a ciphertext copied onto another account's row does not decrypt.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class CredentialError(Exception):
    pass


class CredentialCipher:
    def __init__(self, keys: dict[str, bytes], primary: str) -> None:
        if primary not in keys:
            raise CredentialError("primary key id not among the keys")
        for kid, key in keys.items():
            if len(key) != 32 or not kid.isalnum():
                raise CredentialError("keys must be 32 bytes with alphanumeric ids")
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self._primary = primary

    @classmethod
    def from_setting(cls, value: str) -> CredentialCipher:
        """Parse "kid:base64,kid2:base64"; the first key encrypts, every key decrypts."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for part in value.split(","):
            kid, _, encoded = part.strip().partition(":")
            if not kid or not encoded:
                raise CredentialError("credential keys must look like kid:base64key")
            keys[kid] = base64.b64decode(encoded)
            order.append(kid)
        return cls(keys, order[0])

    def encrypt(self, account_id: str, credentials: dict[str, Any]) -> bytes:
        nonce = os.urandom(12)
        plaintext = json.dumps(credentials, separators=(",", ":")).encode()
        sealed = self._keys[self._primary].encrypt(nonce, plaintext, account_id.encode())
        return b"v1." + self._primary.encode() + b"." + nonce + sealed

    def decrypt(self, account_id: str, blob: bytes) -> dict[str, Any]:
        try:
            version, kid, rest = bytes(blob).split(b".", 2)
        except ValueError as exc:
            raise CredentialError("malformed credential ciphertext") from exc
        aead = self._keys.get(kid.decode())
        if version != b"v1" or aead is None:
            raise CredentialError("unknown credential key id")
        try:
            plaintext = aead.decrypt(rest[:12], rest[12:], account_id.encode())
        except InvalidTag as exc:
            raise CredentialError("credentials do not decrypt for this account") from exc
        data: dict[str, Any] = json.loads(plaintext)
        return data

    def needs_rotation(self, blob: bytes) -> bool:
        return not bytes(blob).startswith(b"v1." + self._primary.encode() + b".")
