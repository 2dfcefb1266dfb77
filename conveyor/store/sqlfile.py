"""Named SQL blocks in ``.sql`` files: ``-- name: NAME`` starts a block, the rest is SQL.

Adapters keep every statement in such files and look them up by name, so the SQL can be
read, reviewed and run by hand on its own.

A part several statements share (the same CTEs, say) is written once, as a block whose
name starts with ``_``: a line ``-- include: _NAME`` in a block stands for its text.
Such parts are not statements, and are not among the blocks loaded.

A block is loaded without its whole-line comments, under one line naming it (``--
NAME``, so the server's views of running and past statements still say which it is).
The comments explain the statements to their readers and are sent for nothing: psycopg
parses a statement's placeholders again on every call once its text passes 4 KiB (its
cache of parsed statements leaves longer ones out), and `complete_many` with its comments
was 5.2 KiB: 21.9 µs per call to convert against 2.6 µs without them.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^[ \t]*--\s*include:\s*(\S*)\s*$", re.MULTILINE)


def parse_blocks(text: str) -> dict[str, str]:
    """Split ``text`` into ``{name: sql}``, the shared parts (``_NAME``) written into the
    blocks that include them and left out; text before the first name is ignored."""
    parts = _NAME.split(text)
    bodies = dict(zip(parts[1::2], parts[2::2], strict=True))
    if len(bodies) != len(parts[1::2]):
        raise ValueError("duplicate query name in SQL file")

    def include(match: re.Match[str]) -> str:
        part = match.group(1)
        if not part.startswith("_") or part not in bodies:
            raise ValueError(f"-- include: {part}: no such part (a block named _...) "
                             "in the SQL file")
        if _INCLUDE.search(bodies[part]):
            raise ValueError(f"-- include: {part}: a part does not include another")
        return bodies[part].strip("\n")

    return {name: f"-- {name}\n{_without_comment_lines(_INCLUDE.sub(include, body))}"
            for name, body in bodies.items() if not name.startswith("_")}


def _without_comment_lines(sql: str) -> str:
    """``sql`` without the lines that hold only a ``--`` comment (comments after SQL on a
    line stay), and without surrounding blank lines."""
    return "\n".join(line for line in sql.strip().splitlines()
                     if not line.lstrip().startswith("--"))


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
