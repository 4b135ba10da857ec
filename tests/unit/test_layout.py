"""The package layout's import rules, held by reading every module's imports.

Each module under ``opstatus/`` is parsed with ``ast``; every ``import`` counts,
including those inside functions and under ``TYPE_CHECKING``, because a rule that
a lazy import may break is no rule. The rules are the table :data:`RULES`.
"""

from __future__ import annotations

import ast
import graphlib
import itertools
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

import opstatus

ROOT = Path(opstatus.__file__).parent

#: the SDK and the agents
SDK_AND_AGENTS = (
    "opstatus",  # the package itself: ``from opstatus import Client``
    "opstatus.client", "opstatus.client.*",
    "opstatus.agent", "opstatus.agent.*",
)  # fmt: skip
#: the modules that form the client side: the SDK, the agents and the HTTP commands
CLIENT_SIDE = (
    *SDK_AND_AGENTS,
    "opstatus.cli.op", "opstatus.cli.agent", "opstatus.cli.views", "opstatus.cli.demo",
    "opstatus.cli.remote", "opstatus.cli.resources",
)  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """Modules matching ``sources`` import, of ours, only ``allowed`` (when given) and,
    of anything, nothing in ``forbidden``. Patterns are :func:`fnmatch` ones on dotted
    names: ``opstatus.api.*`` is below api, ``opstatus.api`` the package itself."""

    name: str
    sources: tuple[str, ...]
    allowed: tuple[str, ...] | None = None
    forbidden: tuple[str, ...] = ()


def below(*parts: str) -> tuple[str, ...]:
    """Patterns for each ``opstatus.PART`` and everything in it."""
    return tuple(p for part in parts for p in (f"opstatus.{part}", f"opstatus.{part}.*"))


RULES = (
    Rule("domain imports nothing of ours but domain", below("domain"), allowed=below("domain")),
    Rule(
        "the client side imports only the SDK, the agents, the views, remote and wire",
        CLIENT_SIDE,
        allowed=(*SDK_AND_AGENTS, "opstatus.cli.views", "opstatus.cli.remote", "opstatus.wire"),
    ),
    Rule(
        "wire imports only domain.states, domain.roles, domain.errors and domain.webhooks",
        ("opstatus.wire",),
        allowed=(
            "opstatus.domain.states",
            "opstatus.domain.roles",
            "opstatus.domain.errors",
            "opstatus.domain.webhooks",
        ),
    ),
    Rule("dialects never import api", below("dialects"), forbidden=below("api")),
    Rule(
        "api never imports dialects or bridges",
        below("api"),
        forbidden=below("dialects", "bridges"),
    ),
    Rule("web imports neither api nor dialects", below("web"), forbidden=below("api", "dialects")),
    Rule(
        "the pytest plugin speaks HTTP only: it imports nothing of ours",
        ("opstatus.testing.pytest_plugin",),
        allowed=(),
    ),
    Rule(
        "only the server mounts the testing mode",
        below("domain", "store", "service", "web", "api", "dialects", "bridges", "client"),
        forbidden=below("testing"),
    ),
    Rule(
        "store and service import no web, api, dialects or starlette",
        below("store", "service"),
        forbidden=(*below("web", "api", "dialects"), "starlette", "starlette.*"),
    ),
)
#: the parts whose imports must not form a cycle (``opstatus.X`` for X here)
PARTS = (
    "domain", "store", "service", "web", "api", "dialects", "bridges", "ui", "server",
    "wire", "client", "agent", "cli", "settings", "logs", "testing",
)  # fmt: skip
#: what importing the SDK must not load in a fresh interpreter
NOT_LOADED_BY_THE_SDK = (
    "starlette", "asyncpg", "prometheus_client", "limits", "uvicorn", "aiomqtt",
    "opstatus.store", "opstatus.service", "opstatus.web", "opstatus.server",
)  # fmt: skip


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported."""

    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the module in ``path`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package in ``root``, by dotted name."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, known: Iterable[str]) -> Iterator[Import]:
    """What the module ``name`` (source in ``path``) imports, anywhere in its body.

    ``from package import name`` imports the submodule ``package.name`` when there is
    one, else ``package`` itself; relative imports resolve against the package.
    """
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(name, sub if sub in known else base, node.lineno)


def all_imports(root: Path = ROOT) -> list[Import]:
    """Every import of every module under ``root``."""
    found = modules(root)
    every = (i for name, path in found.items() for i in imports_of(name, path, found))
    return list(dict.fromkeys(every))  # one per module and line


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether the dotted ``name`` matches one of the patterns."""
    return any(fnmatchcase(name, p) for p in patterns)


def breaches(rule: Rule, found: Iterable[Import]) -> list[str]:
    """The imports that break ``rule``."""
    bad = []
    for imp in found:
        if not matches(imp.source, rule.sources):
            continue
        ours = imp.target == "opstatus" or imp.target.startswith("opstatus.")
        if rule.allowed is not None and ours and not matches(imp.target, rule.allowed):
            bad.append(str(imp))
        elif matches(imp.target, rule.forbidden):
            bad.append(str(imp))
    return bad


def part(name: str) -> str | None:
    """The top-level part a module belongs to (the package itself is the SDK's face)."""
    if name == "opstatus":
        return "client"
    top = name.split(".")[1] if name.startswith("opstatus.") else None
    return top if top in PARTS else None


def part_graph(found: Iterable[Import]) -> dict[str, set[str]]:
    """Part -> the other parts it imports."""
    graph: dict[str, set[str]] = {p: set() for p in PARTS}
    for imp in found:
        source, target = part(imp.source), part(imp.target)
        if source is not None and target is not None and source != target:
            graph[source].add(target)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its nodes, the first repeated last), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        found: list[str] = error.args[1]
        return found
    return None


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    """Every import of the package."""
    return all_imports()


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_rule(rule: Rule, imports: list[Import]) -> None:
    bad = breaches(rule, imports)
    assert not bad, "\n".join(bad)


def test_every_part_exists_and_every_module_has_a_part() -> None:
    found = modules(ROOT)
    assert [p for p in PARTS if f"opstatus.{p}" not in found] == []
    assert [name for name in found if part(name) is None] == []


def test_no_cycle_between_the_parts(imports: list[Import]) -> None:
    graph = part_graph(imports)
    loop = cycle(graph)
    if loop is not None:
        hops = set(itertools.pairwise(loop))
        lines = [str(i) for i in imports if (part(i.source), part(i.target)) in hops]
        pytest.fail(f"import cycle {' -> '.join(loop)}:\n" + "\n".join(lines))


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    """A planted breach of each kind is found, so the checks above can fail."""
    package = tmp_path / "opstatus"
    for folder in ("domain", "client", "store"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "domain" / "bad.py").write_text("def f():\n    from ..store import x\n")
    (package / "client" / "bad.py").write_text("from opstatus.store import port\n")
    (package / "store" / "port.py").write_text("import starlette.responses\n")
    found = all_imports(package)
    assert breaches(RULES[0], found) == ["opstatus.domain.bad:2 imports opstatus.store"]
    assert breaches(RULES[1], found) == ["opstatus.client.bad:1 imports opstatus.store.port"]
    assert breaches(RULES[-1], found) == ["opstatus.store.port:1 imports starlette.responses"]
    assert cycle(part_graph(found)) is None
    assert cycle({"a": {"b"}, "b": {"a"}}) in (["a", "b", "a"], ["b", "a", "b"])


def test_importing_the_sdk_loads_no_server_module() -> None:
    code = "import sys; from opstatus import Client, AsyncClient; print(sorted(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = done.stdout.split("'")[1::2]
    assert "opstatus.client._client" in loaded  # the probe did import the SDK
    unwanted = [p for name in NOT_LOADED_BY_THE_SDK for p in (name, f"{name}.*")]
    assert [m for m in loaded if matches(m, unwanted)] == []
