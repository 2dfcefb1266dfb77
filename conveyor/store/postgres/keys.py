"""API keys in PostgreSQL: only hashes are stored; times come from the database clock."""

from __future__ import annotations

from collections.abc import Sequence

from ...keys import ApiKey
from .. import rows
from ..sqlfile import load_blocks
from .core import Conn, PgCore, psycopg

KEYS_SQL = load_blocks(__package__ + ".sql", "keys.sql")


class KeyMixin(PgCore):
    """The API-key methods of the store port (see :mod:`conveyor.store.base`)."""

    async def insert_keys(self, keys: Sequence[ApiKey]) -> None:
        if not keys:
            return

        async def insert(conn: Conn) -> None:
            async with conn.cursor() as cur:
                await cur.executemany(KEYS_SQL["insert_key"], [
                    {"id": k.id, "tenant": k.tenant, "scopes": ",".join(k.scopes),
                     "key_hash": k.key_hash, "name": k.name} for k in keys])

        try:
            await self._tx(insert)
        except psycopg.errors.UniqueViolation as exc:
            raise ValueError(f"an API key with this id already exists: {exc}") from exc

    async def _key_rows(self, name: str, params: dict[str, object]) -> list[ApiKey]:
        async def read(conn: Conn) -> list[ApiKey]:
            cur = await conn.execute(KEYS_SQL[name], params)
            return [rows.api_key(r) for r in await cur.fetchall()]

        return await self._read(read)

    async def get_keys(self, ids: Sequence[str]) -> list[ApiKey]:
        return await self._key_rows("get_keys", {"ids": list(ids)})

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        return await self._key_rows("list_keys", {"tenant": tenant})

    async def revoke_keys(self, ids: Sequence[str]) -> list[str]:
        async def revoke(conn: Conn) -> list[str]:
            cur = await conn.execute(KEYS_SQL["revoke_keys"], {"ids": list(ids)})
            return sorted(r["id"] for r in await cur.fetchall())

        return await self._tx(revoke)
