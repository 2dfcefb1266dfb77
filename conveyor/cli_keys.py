"""``conveyor keys``: create, list and revoke API keys, directly on the store (``--store``,
like ``conveyor migrate``). The plaintext of a key is printed once, at creation, and is
not kept anywhere; only its hash is stored."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .config import Config
from .errors import ConveyorError
from .keys import ApiKey, new_key
from .store.base import Store

T = TypeVar("T")
out = Console()
StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL (CONVEYOR_STORE)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print raw JSON")]


def register_key_commands(app: typer.Typer, fail: Callable[..., NoReturn],
                          load: Callable[..., Config]) -> None:
    """Add ``keys create|list|revoke`` to ``app``; ``load(store=...)`` gives the config."""
    keys = typer.Typer(help="API keys: create, list, revoke (on the store directly).",
                       no_args_is_help=True)
    app.add_typer(keys, name="keys")

    def on_store(store_url: str | None, fn: Callable[[Store], Awaitable[T]]) -> T:
        from .wiring import make_store

        config = load(store=store_url)

        async def go() -> T:
            store = make_store(config)
            try:
                await store.open()
                return await fn(store)
            finally:
                await store.close()

        try:
            return asyncio.run(go())
        except ConveyorError as exc:
            fail(str(exc))

    @keys.command("create")
    def create(
        tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key acts for")],
        scope: Annotated[str, typer.Option(
            "--scope", help="Comma-separated scopes: read, submit, admin")] = "read,submit",
        name: Annotated[str, typer.Option("--name", help="A label to recognise it by")] = "",
        store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """Create a key and print it once (only its hash is stored)."""
        try:
            key, plaintext = new_key(tenant, scope.split(","), name)
        except ValueError as exc:
            fail(str(exc), 2)

        async def insert(s: Store) -> None:
            await s.insert_keys([key])

        on_store(store, insert)
        if as_json:
            out.print_json(json.dumps({**key.to_json(), "key": plaintext}))
        else:
            out.print(plaintext, highlight=False, soft_wrap=True)
            Console(stderr=True).print(
                f"key {key.id} for tenant {key.tenant} ({','.join(key.scopes)}): "
                "store it now, it cannot be shown again", highlight=False)

    @keys.command("list")
    def list_(
        tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant")] = None,
        store: StoreOpt = None, as_json: JsonOpt = False,
    ) -> None:
        """List keys (ids, tenants, scopes, state); never the keys themselves."""
        found = on_store(store, lambda s: s.list_keys(tenant))
        if as_json:
            out.print_json(json.dumps([k.to_json() for k in found]))
        else:
            out.print(_table(found))

    @keys.command("revoke")
    def revoke(
        key_ids: Annotated[list[str], typer.Argument(help="Key ids (as in `keys list`)")],
        store: StoreOpt = None,
    ) -> None:
        """Revoke keys: requests with them are refused (401) from then on."""
        done = on_store(store, lambda s: s.revoke_keys(key_ids))
        missing = sorted(set(key_ids) - set(done))
        for key_id in done:
            out.print(f"revoked {key_id}", highlight=False)
        if missing:
            fail(f"no such key: {', '.join(missing)}")


def _when(value: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) if value else "-"


def _table(found: list[ApiKey]) -> Table:
    table = Table("id", "tenant", "scopes", "name", "created", "revoked")
    for k in found:
        table.add_row(k.id, k.tenant, ",".join(k.scopes), k.name, _when(k.created_at),
                      _when(k.revoked_at))
    return table


__all__ = ["register_key_commands"]
