"""Who is calling: stateless bearer tokens for applicants, the per-client caller of routes before login.

Owns `TokenSigner` (``account_id.expiry.hmac``, no session row to write at login) and `Auth`, whose
dependencies authenticate a request and then claim its ``Idempotency-Key`` for that caller
(simulator/api/idempotency.py), so a replay never answers before a 401.
"""

import base64
import hashlib
import hmac
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from simulator.api.responses import ApiError
from simulator.rules.reasons import Reason


class TokenSigner:
    """Stateless bearer tokens: ``account_id.expiry.hmac``; no session row to write at login."""

    def __init__(self, secret: bytes, ttl_s: float):
        self.secret = secret
        self.ttl_s = int(ttl_s)

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self.secret, payload.encode(), hashlib.sha256).digest()[:20]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, account_id: str) -> str:
        payload = f"{account_id}.{int(time.time()) + self.ttl_s}"
        return f"{payload}.{self._mac(payload)}"

    def account_of(self, token: str) -> str | None:
        account_id, _, rest = token.partition(".")
        expiry, _, mac = rest.partition(".")
        if not (account_id and expiry.isdigit() and mac):
            return None
        if not hmac.compare_digest(mac, self._mac(f"{account_id}.{expiry}")):
            return None
        return account_id if int(expiry) > time.time() else None


class Auth:
    """The route dependencies: ``Annotated[str, auth.account]`` (an applicant) and ``auth.anonymous``."""

    def __init__(self, signer: TokenSigner, idempotent):  # idempotency_dependency(...)
        self.signer = signer
        bearer = HTTPBearer(auto_error=False, description="token from POST /v1/sessions")

        async def current_account(
            request: Request,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> str:
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise ApiError(
                    Reason.UNAUTHENTICATED,
                    "log in first: Authorization: Bearer <token>",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            account_id = signer.account_of(credentials.credentials)
            if account_id is None:
                raise ApiError(
                    Reason.UNAUTHENTICATED,
                    "the token is invalid or expired; log in again",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            await idempotent(request, account_id)
            return account_id

        async def anonymous_caller(request: Request) -> str:
            # Routes before login: each client address has its own key space.
            caller = f"anonymous@{(request.scope.get('client') or ('', 0))[0]}"
            await idempotent(request, caller)
            return caller

        self.account = Depends(current_account)
        self.anonymous = Depends(anonymous_caller)
