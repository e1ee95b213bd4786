"""The map of the core holds: imports run one way, and no broker is privileged by type."""

from __future__ import annotations

import ast
from pathlib import Path

import polyqueue

PACKAGE = Path(polyqueue.__file__).parent

WORKER_SIDE = [
    "polyqueue.worker",
    "polyqueue.intake",
    "polyqueue.membership",
    "polyqueue.maintenance",
    "polyqueue.scheduler",
    "polyqueue.outcomes",
    "polyqueue.executor",
    "polyqueue.runtime",
    "polyqueue.control",
    "polyqueue.producer",
]
"""Modules below the app: they work with a `Runtime` and must not know the app."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, *, typing_too: bool = False) -> set[str]:
    """The polyqueue modules `module` imports, at the top or inside functions; imports under
    `if TYPE_CHECKING:` only with `typing_too`."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child) and not typing_too:
                for statement in child.orelse:
                    visit(statement)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    found.add(submodule if submodule in MODULES else child.module)
            visit(child)

    visit(ast.parse(MODULES[module].read_text(encoding="utf-8")))
    return {name for name in found if name in MODULES and name != module}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = {module: imports_of(module) for module in MODULES}
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_below_the_app_imports_it_even_for_typing() -> None:
    offenders = {
        module: sorted(imports_of(module, typing_too=True) & {"polyqueue.app", "polyqueue.sync"})
        for module in WORKER_SIDE
    }
    assert {module: found for module, found in offenders.items() if found} == {}


def _broker_classes() -> dict[str, str]:
    """Broker classes defined in `polyqueue.brokers.*`, by class name -> module."""
    classes = {}
    for module, path in MODULES.items():
        if module.startswith("polyqueue.brokers."):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef):
                    classes[node.name] = module
    return classes


def test_no_isinstance_on_a_concrete_broker_outside_its_own_module() -> None:
    classes = _broker_classes()
    assert {"PostgresBroker", "InProcessBroker"} <= set(classes)
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance"
                and len(node.args) == 2
            ):
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                found += [(module, n) for n in names if n in classes and classes[n] != module]
    assert found == []


def test_only_the_built_in_plugin_names_the_built_in_brokers() -> None:
    """The core reaches its brokers through the registry, as it reaches a plugin's."""
    users = sorted(
        module
        for module in MODULES
        if not module.startswith("polyqueue.brokers")
        and "polyqueue.brokers.postgres" in imports_of(module, typing_too=True)
    )
    assert users == ["polyqueue.builtins"]
