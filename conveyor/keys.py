"""API keys: the format, the hash that is stored, scopes, and verification.

A key looks like ``cvk_<id>_<secret>``: ``id`` is 12 hex characters, visible, used to list
and revoke the key; ``secret`` is 32 random bytes (URL-safe base64). The plaintext is shown
once, at creation; the store keeps only the SHA-256 of the whole key. Verification looks
the key up by its id (not secret) and compares hashes with :func:`hmac.compare_digest`,
so the comparison time does not depend on how much of a guess was right.

Scopes: ``read`` (list and show jobs, operations, dead letters, stats, workers, tasks),
``submit`` (submit and cancel jobs) and ``admin`` (everything, plus dead-letter replay and
key management). A key belongs to one tenant and sees only that tenant's jobs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

PREFIX = "cvk_"
SCOPES = ("read", "submit", "admin")
TENANT_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_KEY_RE = re.compile(r"^cvk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: never its plaintext, only ``key_hash`` (hex SHA-256 of the key)."""

    id: str
    tenant: str
    scopes: tuple[str, ...]
    key_hash: str
    created_at: float = 0.0
    """Set by the store's clock on insert."""
    revoked_at: float | None = None
    name: str = ""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows(self, scope: str) -> bool:
        """``admin`` allows everything; otherwise the scope must be granted."""
        return "admin" in self.scopes or scope in self.scopes

    def to_json(self) -> dict[str, object]:
        """Everything but the hash (which is useless to show and should not travel)."""
        return {"id": self.id, "tenant": self.tenant, "scopes": list(self.scopes),
                "name": self.name, "created_at": self.created_at,
                "revoked_at": self.revoked_at}


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def parse_scopes(raw: str | Iterable[str]) -> tuple[str, ...]:
    """``"submit,read"`` -> ``("read", "submit")``; raises ``ValueError`` on unknown ones."""
    names = [s.strip() for s in (raw.split(",") if isinstance(raw, str) else raw) if s.strip()]
    unknown = sorted(set(names) - set(SCOPES))
    if unknown or not names:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)} (got {raw!r})")
    return tuple(s for s in SCOPES if s in names)


def new_key(tenant: str, scopes: Iterable[str], name: str = "") -> tuple[ApiKey, str]:
    """A fresh key for ``tenant``: the record to store and the plaintext to show once."""
    if not TENANT_RE.match(tenant):
        raise ValueError("tenant: 1-64 characters of letters, digits and _ . : -")
    parsed = parse_scopes(list(scopes))
    key_id = secrets.token_hex(6)
    plaintext = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return ApiKey(id=key_id, tenant=tenant, scopes=parsed, key_hash=hash_key(plaintext),
                  name=name[:200]), plaintext


def key_id_of(plaintext: str) -> str | None:
    """The id part of a well-formed key, or None (malformed keys never reach the store)."""
    match = _KEY_RE.match(plaintext)
    return match.group(1) if match else None


def matches(stored: ApiKey, plaintext: str) -> bool:
    """Whether ``plaintext`` is the key ``stored`` was made from (constant-time compare)."""
    return hmac.compare_digest(stored.key_hash.encode(), hash_key(plaintext).encode())


__all__ = ["PREFIX", "SCOPES", "ApiKey", "hash_key", "key_id_of", "matches", "new_key",
           "parse_scopes"]
