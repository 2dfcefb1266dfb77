"""PostgreSQL store: one database shared by any number of API and worker processes.

See :mod:`.store` for durability, time and schema guarantees and :mod:`.leases` for how
claims keep per-key order across many claimers. Needs the ``postgres`` extra (psycopg 3
and psycopg_pool).
"""

from __future__ import annotations

from .core import SCHEMA_VERSION
from .store import PostgresStore, insert_jobs

__all__ = ["SCHEMA_VERSION", "PostgresStore", "insert_jobs"]
