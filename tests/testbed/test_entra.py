"""The Entra ID stand-ins (testbed.entra): signed tokens verify with the published JWKS and carry the claims a
broker checks; unsigned ones stay JWT-shaped only."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from testbed.entra import ISSUER, TokenSigner, entra_token


def _decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _public_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    n, e = (int.from_bytes(_decode(jwk[k]), "big") for k in ("n", "e"))
    return rsa.RSAPublicNumbers(e, n).public_key()


def test_signed_tokens_verify_with_the_jwks_and_carry_the_checked_claims() -> None:
    """A signed token's header names the JWKS key (kid, RS256), its signature verifies with that key and fails for
    another signer's key, and it has aud, iss, sub, iat and exp; a negative lifetime gives an expired token."""
    signer, other = TokenSigner(), TokenSigner()
    token = entra_token("https://kafka.bridge.test", 20, signer=signer)
    header_b64, claims_b64, signature_b64 = token.split(".")
    header, claims = json.loads(_decode(header_b64)), json.loads(_decode(claims_b64))
    (jwk,) = signer.jwks()["keys"]
    assert header == {"typ": "JWT", "alg": "RS256", "kid": jwk["kid"]} and jwk["kid"] == signer.kid
    signed, signature = f"{header_b64}.{claims_b64}".encode(), _decode(signature_b64)
    _public_key(jwk).verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        _public_key(other.jwks()["keys"][0]).verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    now = time.time()
    assert claims["aud"] == "https://kafka.bridge.test" and claims["iss"] == ISSUER and claims["sub"]
    assert claims["iat"] <= now < claims["exp"] <= now + 21
    expired = json.loads(_decode(entra_token("a", -300, signer=signer).split(".")[1]))
    assert expired["iat"] < expired["exp"] < now - 200
    assert _decode(entra_token("a").split(".")[2]) == b"not-signed"
