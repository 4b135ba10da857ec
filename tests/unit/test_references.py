"""The repository explains itself: no file points at a document the repository lacks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: where the repository's own words live
PLACES = ("opstatus", "tests", "bench", "faults", "docs", "README.md", "Makefile", "pyproject.toml")
SUFFIXES = {".py", ".sql", ".md", ".toml", ".js", ".html", ".css", ".txt", ""}
#: references to documents outside the repository (the original design, vendor copies)
OUTSIDE = re.compile(r"DESIGN\.md|STYLE\.md|§\s*\d|\bseeds?/|\.\./shared|seed 00\d")


def _files() -> list[Path]:
    found: list[Path] = []
    for place in PLACES:
        path = ROOT / place
        candidates = [path] if path.is_file() else path.rglob("*")
        found += [
            p for p in candidates
            if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts
        ]  # fmt: skip
    return found


def test_no_file_points_outside_the_repository() -> None:
    me = Path(__file__).resolve()
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _files()
        if path.resolve() != me
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert hits == []
