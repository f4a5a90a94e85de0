import base64
import os
import time

import jwt
import pytest

from services.infra.auth import (
    VERIFIED_CACHE_MAX,
    Principal,
    TokenError,
    TokenExpired,
    TokenIssuer,
    hash_password,
    verify_password,
)
from services.infra.crypto import CredentialCipher, CredentialError


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_credentials_round_trip_and_bind_to_the_account() -> None:
    cipher = CredentialCipher.from_setting(f"k1:{key()}")
    blob = cipher.encrypt("acct-1", {"key_id": "PK1", "secret_key": "s3cret"})
    assert b"s3cret" not in blob and b"PK1" not in blob
    assert cipher.decrypt("acct-1", blob) == {"key_id": "PK1", "secret_key": "s3cret"}
    with pytest.raises(CredentialError):
        cipher.decrypt("acct-2", blob)  # a ciphertext copied to another account is useless


def test_key_rotation_keeps_old_ciphertexts_readable() -> None:
    old_key, new_key = key(), key()
    old = CredentialCipher.from_setting(f"k1:{old_key}")
    blob = old.encrypt("a", {"x": 1})
    rotated = CredentialCipher.from_setting(f"k2:{new_key},k1:{old_key}")
    assert rotated.decrypt("a", blob) == {"x": 1}
    assert rotated.needs_rotation(blob)
    assert not rotated.needs_rotation(rotated.encrypt("a", {"x": 1}))
    with pytest.raises(CredentialError):
        CredentialCipher.from_setting(f"k2:{new_key}").decrypt("a", blob)


def test_bad_key_settings_are_refused() -> None:
    with pytest.raises(CredentialError):
        CredentialCipher.from_setting("nokey")
    with pytest.raises(CredentialError):
        CredentialCipher.from_setting("k1:" + base64.b64encode(b"short").decode())


def test_passwords() -> None:
    stored = hash_password("correct horse", n=1024)
    assert verify_password("correct horse", stored)
    assert not verify_password("wrong horse", stored)
    assert not verify_password("x", "garbage")


ISSUER = TokenIssuer("s" * 48, "copytrade", "copytrade-api")


def test_token_round_trip() -> None:
    token = ISSUER.issue(Principal("u1", "master"), 60)
    verified = ISSUER.verify(token)
    assert (verified.user_id, verified.role) == ("u1", "master")
    assert verified.expires_at is not None and verified.expires_at > time.time() + 50


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "u1",
        "role": "master",
        "iss": "copytrade",
        "aud": "copytrade-api",
        "iat": now,
        "exp": now + 60,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(
    "token",
    [
        jwt.encode(_claims(exp=int(time.time()) - 60), "s" * 48, algorithm="HS256"),  # expired
        jwt.encode(_claims(), "forged-secret-forged-secret-forged!!", algorithm="HS256"),
        jwt.encode(_claims(aud="someone-else"), "s" * 48, algorithm="HS256"),
        jwt.encode(_claims(iss="someone-else"), "s" * 48, algorithm="HS256"),
        jwt.encode(_claims(exp=None), "s" * 48, algorithm="HS256"),
        jwt.encode(_claims(iat=None), "s" * 48, algorithm="HS256"),
        jwt.encode(_claims(sub=None), "s" * 48, algorithm="HS256"),
        jwt.encode(_claims(role="superuser"), "s" * 48, algorithm="HS256"),
        jwt.encode(_claims(), "s" * 48, algorithm="HS512"),  # algorithm is pinned
        jwt.encode(_claims(), None, algorithm="none"),
        "not-a-jwt",
    ],
)
def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(TokenError):
        ISSUER.verify(token)


def test_websocket_tokens_do_not_work_as_access_tokens() -> None:
    ws_token = ISSUER.issue(
        Principal("u1", "follower"), 30, websocket=True, session_expires_at=1234567890 + 10**9
    )
    verified = ISSUER.verify(ws_token, websocket=True)
    assert verified.user_id == "u1" and verified.expires_at == 1234567890 + 10**9
    with pytest.raises(TokenError):
        ISSUER.verify(ws_token)


def test_a_verified_token_is_remembered_until_it_expires() -> None:
    """Verified once per process (the signature and claims of a token cannot change), refused
    as expired once exp + the 5 s leeway has passed, exactly as PyJWT would."""
    issuer = TokenIssuer("s" * 48, "copytrade", "copytrade-api")
    # exp 4 s ago: still inside the leeway for about one more second.
    token = jwt.encode(_claims(exp=int(time.time()) - 4), "s" * 48, algorithm="HS256")
    first = issuer.verify(token)
    assert issuer.verify(token) == first
    assert len(issuer._verified) == 1
    time.sleep(1.2)
    with pytest.raises(TokenExpired):
        issuer.verify(token)
    # Refusals are never remembered: a bad token costs a full check every time.
    with pytest.raises(TokenError):
        issuer.verify(token[:-2] + "xx")


def test_the_verified_tokens_kept_are_bounded() -> None:
    issuer = TokenIssuer("s" * 48, "copytrade", "copytrade-api")
    for i in range(VERIFIED_CACHE_MAX + 10):
        issuer._verified[(f"t{i}", False)] = (time.time() - 1, Principal("u", "master"))
    issuer.verify(issuer.issue(Principal("u1", "master"), 60))
    assert len(issuer._verified) <= VERIFIED_CACHE_MAX // 2
