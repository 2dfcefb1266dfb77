"""Named SQL blocks in ``.sql`` files: ``-- name: NAME`` starts a block, the rest is SQL.

Adapters keep every statement in such files and look them up by name, so the SQL can be
read, reviewed and run by hand on its own.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)


def parse_blocks(text: str) -> dict[str, str]:
    """Split ``text`` into ``{name: sql}``; text before the first name is ignored."""
    parts = _NAME.split(text)
    blocks = {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}
    if len(blocks) != len(parts[1::2]):
        raise ValueError("duplicate query name in SQL file")
    return blocks


def load_blocks(package: str, filename: str) -> dict[str, str]:
    """The named blocks of ``filename`` shipped inside ``package``."""
    return parse_blocks(resources.files(package).joinpath(filename).read_text("utf-8"))


def migrations(package: str) -> list[tuple[int, str]]:
    """``(version, sql)`` for every ``NNN_name.sql`` in ``package``, in version order."""
    found = []
    for entry in resources.files(package).iterdir():
        match = re.match(r"^(\d{3})_[\w-]+\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text("utf-8")))
    return sorted(found)
