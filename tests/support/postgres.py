"""PostgreSQL for tests: the server URL, and a fresh database or schema per test.

``CONVEYOR_TEST_POSTGRES_URL`` (exported by ``scripts/test.sh``; start a server with
``scripts/postgres.sh start``) names a database whose user may create databases.
Without it the tests skip locally and **fail** in CI (``CI`` set).
"""

from __future__ import annotations

import os
import re
import uuid
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

ENV = "CONVEYOR_TEST_POSTGRES_URL"


def admin_url() -> str:
    """The configured server URL, or skip (locally) / fail (CI) without one."""
    url = os.environ.get(ENV, "")
    if not url:
        message = f"{ENV} is not set (run scripts/postgres.sh start, or scripts/test.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def with_schema(url: str, schema: str) -> str:
    """``url`` whose sessions use ``schema`` first (via the libpq ``options`` parameter)."""
    parts = urlsplit(url)
    option = "options=" + quote(f"-csearch_path={schema}")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


def create_database(prefix: str) -> str:
    """A new empty database named after ``prefix``; returns its URL."""
    import psycopg

    name = re.sub(r"[^a-z0-9_]", "_", f"{prefix}_{uuid.uuid4().hex[:8]}".lower())[:60]
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url(), name)


def drop_database(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_schema(db_url: str, prefix: str = "t") -> tuple[str, str]:
    """A new empty schema in the database of ``db_url``; returns ``(schema, url)``."""
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema, with_schema(db_url, schema)


def drop_schema(db_url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def migrate_to(url: str, version: int) -> None:
    """Bring the empty schema of ``url`` to the PostgreSQL store's schema ``version``, as a
    Conveyor of that version would have left it: a database to upgrade from."""
    import psycopg

    from conveyor.store.postgres.core import MIGRATIONS

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        for number, sql in MIGRATIONS:
            if number <= version:
                conn.execute(sql.encode())
        conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
