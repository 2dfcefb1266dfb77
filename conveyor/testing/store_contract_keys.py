"""Store conformance, part 5: API keys. Only hashes are stored; ids are unique; revocation
is recorded once by the store's clock; listing filters by tenant.

Run through :class:`conveyor.testing.store_contract.StoreContract`.
"""

from __future__ import annotations

import asyncio

import pytest

from ..keys import ApiKey, hash_key, key_id_of, matches, new_key
from ..store.base import Store
from .contract_support import TIME_TOLERANCE_S


class StoreKeyCases:
    """Needs a ``store`` fixture: an opened, migrated, empty store."""

    async def test_keys_round_trip_without_plaintext(self, store: Store) -> None:
        """Every field round-trips; the plaintext is nowhere in the record, only its hash,
        and the hash matches the plaintext shown at creation."""
        before = await store.now()
        key, plaintext = new_key("acme", ["read", "submit"], name="ci")
        await store.insert_keys([key])
        [got] = await store.get_keys([key.id])
        assert (got.id, got.tenant, got.scopes, got.name) == (
            key.id, "acme", ("read", "submit"), "ci")
        assert got.key_hash == hash_key(plaintext) and plaintext not in repr(got)
        assert got.created_at >= before - TIME_TOLERANCE_S and got.revoked_at is None
        assert key_id_of(plaintext) == key.id and matches(got, plaintext)
        assert not matches(got, plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B"))

    async def test_get_keys_is_a_batch_and_ignores_unknown_ids(self, store: Store) -> None:
        keys = [new_key("t1", ["read"])[0] for _ in range(3)]
        await store.insert_keys(keys)
        found = await store.get_keys([keys[0].id, "000000000000", keys[2].id, keys[0].id])
        assert sorted(k.id for k in found) == sorted([keys[0].id, keys[2].id])
        assert await store.get_keys([]) == []

    async def test_duplicate_id_is_refused_and_stores_nothing(self, store: Store) -> None:
        first, _ = new_key("t1", ["admin"])
        await store.insert_keys([first])
        other, _ = new_key("t2", ["read"])
        clash = ApiKey(id=first.id, tenant="t2", scopes=("read",), key_hash=other.key_hash)
        with pytest.raises(ValueError):
            await store.insert_keys([other, clash])
        assert await store.get_keys([other.id]) == []
        [kept] = await store.get_keys([first.id])
        assert kept.tenant == "t1" and kept.key_hash == first.key_hash

    async def test_list_keys_filters_by_tenant_oldest_first(self, store: Store) -> None:
        a1, _ = new_key("a", ["read"])
        await store.insert_keys([a1])
        await asyncio.sleep(0.01)
        b1, _ = new_key("b", ["submit"])
        a2, _ = new_key("a", ["admin"])
        await store.insert_keys([b1, a2])
        listed_a = await store.list_keys("a")
        assert listed_a[0].id == a1.id
        assert {k.id for k in await store.list_keys("a")} == {a1.id, a2.id}
        assert [k.id for k in await store.list_keys("b")] == [b1.id]
        assert {k.id for k in await store.list_keys()} == {a1.id, a2.id, b1.id}
        assert await store.list_keys("nobody") == []

    async def test_revoke_is_recorded_once_and_kept(self, store: Store) -> None:
        """Revocation returns the ids that exist, sets ``revoked_at`` from the store's clock,
        keeps the first time on a second revoke, and leaves other keys alone."""
        k1, _ = new_key("t", ["read"])
        k2, _ = new_key("t", ["read"])
        await store.insert_keys([k1, k2])
        before = await store.now()
        assert await store.revoke_keys([k1.id, "ffffffffffff"]) == [k1.id]
        [revoked] = await store.get_keys([k1.id])
        assert revoked.revoked and revoked.revoked_at is not None
        assert revoked.revoked_at >= before - TIME_TOLERANCE_S
        await asyncio.sleep(0.02)
        assert await store.revoke_keys([k1.id]) == [k1.id]
        [again] = await store.get_keys([k1.id])
        assert again.revoked_at == pytest.approx(revoked.revoked_at, abs=1e-6)
        [untouched] = await store.get_keys([k2.id])
        assert untouched.revoked_at is None
        assert {k.id for k in await store.list_keys("t")} == {k1.id, k2.id}
