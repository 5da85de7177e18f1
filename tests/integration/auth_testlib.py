"""Kept for test files that import from here: JWT helpers live in herald_test.tokens, the raw HTTP
request (RawResponse, open_sse) in herald_test.http."""
from herald_test import HOST
from herald_test.http import RawResponse, open_sse
from herald_test.tokens import (AUDIENCE, ISSUER, TRUSTED_PROXIES_PATH, Keys, b64url,
                                b64url_decode)

__all__ = [
    "AUDIENCE", "b64url", "b64url_decode", "HOST", "ISSUER", "Keys", "open_sse", "RawResponse",
    "TRUSTED_PROXIES_PATH",
]
