"""SQL kept as data: named blocks in ``sql/*.sql`` and numbered migrations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{4})_\w+\.sql$")
#: ``/*:lock_rows*/`` in a block stands for the dialect's block ``lock_rows`` (a clause
#: such as ``FOR UPDATE``, empty on SQLite), so a statement alike but for it is written once
_FRAGMENT = re.compile(r"/\*:(\w+)\*/")


def parse(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` blocks into ``{name: sql}``."""
    parts = _NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def _inline(named: dict[str, str]) -> dict[str, str]:
    """Put each ``/*:name*/`` fragment's SQL in its place (its comment lines dropped:
    inside a statement they would end the line)."""

    def fragment(match: re.Match[str]) -> str:
        lines = named[match.group(1)].splitlines()
        return " ".join(line for line in lines if not line.lstrip().startswith("--"))

    return {name: _FRAGMENT.sub(fragment, sql) for name, sql in named.items()}


@dataclass(frozen=True, slots=True)
class Queries:
    """The named statements and the migrations of one dialect."""

    dialect: str
    named: dict[str, str]
    migrations: list[tuple[int, str]]

    def __getitem__(self, name: str) -> str:
        return self.named[name]

    def __contains__(self, name: object) -> bool:
        return name in self.named


def load(dialect: str) -> Queries:
    """Load every ``sql/*.sql`` overlaid with the dialect's ``sql/<dialect>/*.sql`` blocks,
    and the dialect's numbered migrations. A block name may appear once per layer."""
    root = resources.files("opstatus.store") / "sql"
    named: dict[str, str] = {}
    for layer in (root, root / dialect):
        seen: dict[str, str] = {}
        for entry in sorted(layer.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".sql"):
                for name, sql in parse(entry.read_text()).items():
                    if name in seen:
                        raise ValueError(f"SQL block {name!r} in {entry.name} and {seen[name]}")
                    seen[name] = entry.name
                    named[name] = sql
    migrations = []
    for entry in (root / dialect / "migrations").iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            migrations.append((int(match.group(1)), entry.read_text()))
    migrations.sort()
    return Queries(dialect=dialect, named=_inline(named), migrations=migrations)
