"""The admin token of the reference API: where it comes from, how a request proves it, how clients send it.

Admin routes (open and close waves, stats) answer 401 ADMIN_UNAUTHORIZED without ``X-Admin-Token``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

ADMIN_TOKEN_ENV = "PRAKERJA_ADMIN_TOKEN"
"""The environment variable `serve` reads the token from (and `surge` and `demo` send it from)."""

ADMIN_HEADER = "X-Admin-Token"
"""The request header that carries the token."""

MIN_TOKEN_LENGTH = 16
"""A shorter token is refused at start: it could be guessed."""


def new_admin_token() -> str:
    """A fresh random token (43 URL-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def admin_token_from_env() -> str | None:
    """The admin token in ``PRAKERJA_ADMIN_TOKEN``, or None when unset or empty."""
    return os.environ.get(ADMIN_TOKEN_ENV) or None


def admin_headers(token: str | None = None) -> dict[str, str]:
    """The header a client sends on admin routes (``token`` or the environment's); empty without one."""
    token = token or admin_token_from_env()
    return {ADMIN_HEADER: token} if token else {}


class AdminToken:
    """Checks a presented token against the server's in constant time (digests of equal length)."""

    def __init__(self, token: str):
        self._digest = hashlib.sha256(token.encode()).digest()

    def accepts(self, presented: str | None) -> bool:
        if not presented:
            return False
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(digest, self._digest)
