"""Authentication and authorization of API requests: who is asking, for which tenant, with
which scopes.

Keys are sent as ``Authorization: Bearer <key>`` and checked against the store (only
hashes are stored; see :mod:`conveyor.keys`). A key that is sent is always checked: a
malformed, unknown or revoked one gets 401 whatever the mode. Without a key, a request
gets 401 when authentication is required (always, unless the API listens on loopback
only), else it acts as tenant ``default`` with every scope (local development).

Route dependencies (:func:`tenant_with`) authenticate, apply the rate limit, then check
the scope (403), in that order, and hand the route its tenant: every store call of the
route is filtered by it, so another tenant's ids answer 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.security import HTTPBearer

from ..keys import SCOPES, ApiKey, key_id_of, matches
from ..store.base import Store
from .problems import Problem

DEFAULT_TENANT = "default"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="conveyor"'}
BEARER_DESCRIPTION = "An API key: `conveyor keys create`"
BEARER_FORMAT = "cvk_<id>_<secret>"
_DECOY = ApiKey(id="", tenant="", scopes=(), key_hash="0" * 64)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for. ``key_id`` is None for an anonymous (open-mode) request."""

    tenant: str
    scopes: tuple[str, ...]
    key_id: str | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


ANONYMOUS = Principal(DEFAULT_TENANT, SCOPES)


class Authenticator:
    def __init__(self, store: Store, *, required: bool) -> None:
        self.store = store
        self.required = required

    async def authenticate(self, request: Request) -> Principal:
        """The request's principal; raises a 401 problem for a missing (when required),
        malformed, unknown or revoked key."""
        header = request.headers.get("authorization")
        if header is None:
            if self.required:
                raise Problem(401, "an API key is required: send 'Authorization: Bearer <key>'",
                              headers=CHALLENGE)
            return ANONYMOUS
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "malformed Authorization header: expected 'Bearer <key>'",
                          headers=CHALLENGE)
        key_id = key_id_of(token)
        if key_id is None:
            raise Problem(401, "malformed API key", headers=CHALLENGE)
        found = await self.store.get_keys([key_id])
        stored = found[0] if found else _DECOY
        # compare even when the id is unknown, so both cases take the same time
        if not matches(stored, token) or not found or stored.revoked:
            raise Problem(401, "unknown or revoked API key", headers=CHALLENGE)
        return Principal(stored.tenant, stored.scopes, stored.id)


class _TenantWith(HTTPBearer):
    """The dependency :func:`tenant_with` gives. It is the bearer security scheme itself
    (so the docs show ``Authorization: Bearer``) rather than a function depending on one:
    one dependency per request to solve instead of two."""

    def __init__(self, scope: str) -> None:
        super().__init__(auto_error=False, description=BEARER_DESCRIPTION,
                         bearerFormat=BEARER_FORMAT, scheme_name="HTTPBearer")
        self.scope = scope

    async def __call__(self, request: Request) -> str:  # type: ignore[override]
        return await authorize(request, self.scope)


async def authorize(request: Request, scope: str) -> str:
    """Authenticate, rate-limit, require ``scope``; gives the tenant. What every /v1 route
    does first: through :func:`tenant_with` in FastAPI routes, called directly by the plain
    submission endpoints (:mod:`conveyor.api.submit`)."""
    principal: Principal = await request.app.state.auth.authenticate(request)
    await request.app.state.rate_limits.check(request, principal)
    if not principal.allows(scope):
        raise Problem(403, f"this key lacks the {scope!r} scope "
                      f"(it has: {', '.join(principal.scopes)})")
    request.state.principal = principal
    return principal.tenant


def tenant_with(scope: str) -> Callable[..., Awaitable[str]]:
    """A route dependency: authenticate, rate-limit, require ``scope``; gives the tenant."""
    return _TenantWith(scope)


async def optional_tenant(request: Request) -> str | None:
    """The tenant of a valid key or of open mode, else None (for open endpoints that show
    more to an identified caller, like ``/health``)."""
    try:
        principal = await request.app.state.auth.authenticate(request)
    except Problem:
        return None
    return str(principal.tenant)
