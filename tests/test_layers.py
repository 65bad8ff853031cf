"""The architecture, as the tree shows it, held by the imports.

Layers, bottom to top; a module imports only from its own layer or those below it:

    types      schemas/                   events, OCPP payloads, UI messages, commands
    domain     hub/domain/                what the events mean: pure functions, no I/O
    platform   hub/*.py                   the bus, subjects, settings, the embedded NATS server
    services   hub/gateway, hub/supervisor, projections, hub/fanout, hub/api
    entry      hub/cli.py, hub/runtime.py, hub/roles.py, */cli.py, hub/fanout/child.py

Developer tools (``tools/``: the simulator, the code generator) stand apart: only entry
points may import them, so no runtime path depends on a developer tool.

Services are siblings. Where one still uses another, the edge is listed in
``SIBLING_EDGES`` with its reason; the list may only shrink (a listed edge that no longer
exists fails too), and no set of packages may import each other in a cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
PACKAGES: Final = ("schemas", "hub", "projections", "tools")

TYPES, DOMAIN, PLATFORM, SERVICES, ENTRY, TOOLS = range(6)
SERVICE_PACKAGES: Final = ("hub.gateway", "hub.supervisor", "projections", "hub.fanout", "hub.api")
ENTRY_MODULES: Final = (
    "hub.cli",
    "hub.runtime",
    "hub.__main__",
    "projections.cli",
    "hub.api.cli",
    "hub.fanout.cli",
    "hub.fanout.child",
    "hub.roles",
)

SIBLING_EDGES: Final = {
    ("hub.fanout", "hub.api"): "the fan-out process serves the REST API beside the UI stream",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def component(module: str) -> str:
    """The unit the cycle check works on: a service package, an entry module, or a layer."""
    if module in ENTRY_MODULES:
        return module
    for package in SERVICE_PACKAGES:
        if module == package or module.startswith(package + "."):
            return package
    if module.startswith("hub.domain"):
        return "hub.domain"
    return module.split(".")[0] if module.split(".")[0] != "hub" else "hub.platform"


def layer(module: str) -> int:
    name = component(module)
    if name in ENTRY_MODULES:
        return ENTRY
    return {
        "schemas": TYPES,
        "hub.domain": DOMAIN,
        "hub.platform": PLATFORM,
        "tools": TOOLS,
    }.get(name, SERVICES)


def imports() -> Iterator[tuple[str, str]]:
    """(importer, imported) for every absolute import of the project's own modules."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            importer = module_name(path)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    if name.split(".")[0] in PACKAGES:
                        yield importer, name


def test_every_import_points_down_the_layers() -> None:
    upward = [
        f"{importer} imports {imported}"
        for importer, imported in imports()
        if layer(imported) > layer(importer) and layer(imported) != TOOLS
    ]
    assert upward == []


def test_only_entry_points_use_developer_tools() -> None:
    runtime_uses_tools = [
        f"{importer} imports {imported}"
        for importer, imported in imports()
        if layer(imported) == TOOLS and layer(importer) not in (ENTRY, TOOLS)
    ]
    assert runtime_uses_tools == []


def test_services_use_each_other_only_where_listed() -> None:
    found = {
        (component(importer), component(imported))
        for importer, imported in imports()
        if layer(importer) == SERVICES
        and layer(imported) == SERVICES
        and component(importer) != component(imported)
    }
    assert found - SIBLING_EDGES.keys() == set(), "a new dependency between services"
    assert SIBLING_EDGES.keys() - found == set(), "a listed edge is gone: remove it from the list"


def test_no_import_cycles_between_packages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for importer, imported in imports():
        if component(importer) != component(imported):
            edges[component(importer)].add(component(imported))
    assert strongly_connected(edges) == []


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: every set of two or more components that import each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in edges.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            members = set()
            while True:
                member = stack.pop()
                members.add(member)
                if member == node:
                    break
            if len(members) > 1:
                cycles.append(members)

    for node in list(edges):
        if node not in index:
            visit(node)
    return cycles


def test_the_check_sees_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
