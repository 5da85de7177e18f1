"""JWTs for the security tests: keys generated here (PyJWT and `cryptography`), valid tokens of
every supported algorithm, and hand-crafted bad ones (unsigned, forged, tampered, key confusion)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

AUDIENCE = "herald-it"
ISSUER = "https://issuer.test"
# Config key for the proxies whose X-Forwarded-For is believed. docs/security.md names it
# `trusted_proxies` without a section; one place to adjust if the server puts it elsewhere.
TRUSTED_PROXIES_PATH = ("trusted_proxies",)


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _pem_public(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


class Keys:
    """One HS256 secret, one RSA-2048 and one P-256 key pair, plus an RSA key the server does not
    know (for 'signed by someone else')."""

    def __init__(self, workdir: str):
        self.hs_secret = "it-secret-" + os.urandom(24).hex()          # > 32 bytes
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_pub_pem = _pem_public(self.rsa)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ec_pub_pem = _pem_public(self.ec)
        self.other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_pub_file = os.path.join(workdir, "jwt-rs.pub")
        with open(self.rsa_pub_file, "w") as f:
            f.write(self.rsa_pub_pem)

    def jwt_keys_config(self) -> list[dict]:
        return [
            {"alg": "HS256", "secret": self.hs_secret},
            {"alg": "RS256", "public_key_file": self.rsa_pub_file},
            {"alg": "ES256", "public_key": self.ec_pub_pem},
        ]

    # ---- valid tokens
    def claims(self, sub: str = "user-1", ttl: float | None = 600, topics=None, **extra) -> dict:
        now = int(time.time())
        c = {"sub": sub, "iat": now, "aud": AUDIENCE, "iss": ISSUER}
        if ttl is not None:
            c["exp"] = int(now + ttl)
        if topics is not None:
            c["topics"] = list(topics)
        c.update(extra)
        return {k: v for k, v in c.items() if v is not None}

    def hs256(self, claims: dict, headers: dict | None = None) -> str:
        return jwt.encode(claims, self.hs_secret, algorithm="HS256", headers=headers)

    def rs256(self, claims: dict, key=None) -> str:
        return jwt.encode(claims, key or self.rsa, algorithm="RS256")

    def es256(self, claims: dict) -> str:
        return jwt.encode(claims, self.ec, algorithm="ES256")

    def token(self, sub: str = "user-1", ttl: float | None = 600, topics=None, **extra) -> str:
        return self.hs256(self.claims(sub, ttl, topics, **extra))

    # ---- bad tokens, crafted by hand
    @staticmethod
    def unsigned(claims: dict) -> str:
        """alg none, empty signature."""
        h = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        p = b64url(json.dumps(claims).encode())
        return f"{h}.{p}."

    @staticmethod
    def forged(token: str) -> str:
        """The same token with one byte of its signature flipped."""
        h, p, s = token.split(".")
        sig = bytearray(b64url_decode(s))
        sig[len(sig) // 2] ^= 0x01
        return f"{h}.{p}.{b64url(bytes(sig))}"

    @staticmethod
    def tampered_payload(token: str, **changes) -> str:
        """The original signature over a changed payload (e.g. more topics)."""
        h, p, s = token.split(".")
        claims = json.loads(b64url_decode(p))
        claims.update(changes)
        return f"{h}.{b64url(json.dumps(claims).encode())}.{s}"

    def key_confusion(self, claims: dict) -> str:
        """HS256 'signed' with the RSA public key PEM as the HMAC secret."""
        h = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        p = b64url(json.dumps(claims).encode())
        mac = hmac.new(self.rsa_pub_pem.encode(), f"{h}.{p}".encode(), hashlib.sha256).digest()
        return f"{h}.{p}.{b64url(mac)}"
