"""The import graph of ``core/``, ``models/`` and ``training/``: no cycles, and the arrows of ARCHITECTURE.md.

The graph is read statically (``ast`` over the files; nothing is imported). An import at module
level (also inside ``try`` / ``if`` / a class body) runs when the module is imported; one inside a
function runs when the function is called. ``if TYPE_CHECKING:`` blocks are not imports at run
time and are left out. Importing ``a.b.c`` also runs the packages ``a`` and ``a.b`` unless the
importing module lies inside them already.

Checked:

* no cycle among module-level imports;
* no cycle among all imports (module and function level) except the allowed ones below, each
  with its reason; a new cycle, or an allowed one that grows, fails;
* ``core`` imports neither ``plugin`` nor ``training`` (at module level or in a function), and
  ``models`` imports neither ``plugin`` nor ``training``. Code named by a string
  (``"module:attribute"``, resolved at run time, like the method catalog's ``training_entry``)
  is not an import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "sarcoreg"
#: The packages whose graph is checked.
CHECKED = ("core", "models", "training")
#: Forbidden arrows: importer package -> imported packages (ARCHITECTURE.md, "Which way things point").
FORBIDDEN = {"core": ("plugin", "training"), "models": ("plugin", "training")}

#: Cycles that exist today and are owned elsewhere: frozenset of modules -> why they stay for now.
#: Remove an entry when its cycle is gone (the test says so).
ALLOWED_CYCLES: dict[frozenset[str], str] = {
    frozenset({"sarcoreg.training.aae_cli", "sarcoreg.training.cli"}): (
        "function level only: cli.main dispatches to aae_cli, aae_cli calls back into cli for shared argument "
        "helpers; both are the lead's files in the middle of the training-loop work (issue 14 item 4), which "
        "gives every method its own training/<method>/ folder and removes the back reference"
    ),
    frozenset({"sarcoreg.training.pair_datasets", "sarcoreg.training.real_pairs"}): (
        "real_pairs imports pair_datasets at module level, pair_datasets imports real_pairs inside one function; "
        "the two files belong to two engineers working on them now (BNN data, real-pair data); to be split "
        "with the per-method training folders of issue 14 item 4"
    ),
}


@dataclass
class Graph:
    """Import edges between the modules of the repository."""

    modules: dict[str, Path] = field(default_factory=dict)
    module_level: dict[str, set[str]] = field(default_factory=dict)
    function_level: dict[str, set[str]] = field(default_factory=dict)

    def all_edges(self) -> dict[str, set[str]]:
        """Module-level and function-level edges together."""
        return {m: self.module_level.get(m, set()) | self.function_level.get(m, set()) for m in self.modules}


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement may load (a module, or a module's attribute / submodule)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    return [source, *(f"{source}.{alias.name}" for alias in node.names)]


def _resolved(name: str, modules: dict[str, Path]) -> str | None:
    """The repository module ``name`` loads (the longest known prefix), or None for outside code."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _loaded(target: str, importer: str) -> set[str]:
    """``target`` and the packages above it that importing it runs (not those ``importer`` is in)."""
    parts = target.split(".")
    out = {target}
    for k in range(1, len(parts)):
        parent = ".".join(parts[:k])
        if not (importer == parent or importer.startswith(parent + ".")):
            out.add(parent)
    return out


def build_graph() -> Graph:
    """Read every module of the repository's packages and collect their imports of one another."""
    graph = Graph()
    for top in ("", "core", "models", "training", "plugin"):
        files = [ROOT / "__init__.py"] if not top else sorted((ROOT / top).rglob("*.py"))
        for path in files:
            graph.modules[_module_name(path)] = path
    for module, path in graph.modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

        def visit(node: ast.AST, in_function: bool, module: str = module, is_package: bool = is_package) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child):
                    for sub in child.orelse:
                        visit(sub, in_function)
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    edges = graph.function_level if in_function else graph.module_level
                    for name in _targets(child, module, is_package):
                        target = _resolved(name, graph.modules)
                        if target is not None and target != module:
                            edges.setdefault(module, set()).update(_loaded(target, module) - {module})
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        visit(tree, False)
    return graph


def cycles(edges: dict[str, set[str]], within: set[str]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module among ``within`` (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = 0
    for start in sorted(within):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, set()) & within)))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, set()) & within))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _describe(component: frozenset[str], graph: Graph) -> str:
    lines = []
    for module in sorted(component):
        for target in sorted(graph.module_level.get(module, set()) & component):
            lines.append(f"  module level:   {module} -> {target}")
        for target in sorted((graph.function_level.get(module, set()) - graph.module_level.get(module, set()))
                             & component):
            lines.append(f"  function level: {module} -> {target}")
    return "\n".join(lines)


GRAPH = build_graph()
CHECKED_MODULES = {m for m in GRAPH.modules if m.split(".")[1:2] and m.split(".")[1] in CHECKED}


def test_the_graph_is_read() -> None:
    assert "sarcoreg.core.engine" in GRAPH.modules and "sarcoreg.training.cli" in GRAPH.modules
    assert "sarcoreg.core.matchers.base" in GRAPH.module_level["sarcoreg.core.engine"]
    assert "sarcoreg.core.methods" in GRAPH.module_level["sarcoreg.core.matchers.base"]
    # relative imports of a package, of a module and of a function-level import
    assert "sarcoreg.models.registry" in GRAPH.module_level["sarcoreg.models"]
    assert "sarcoreg.core.outputs" in GRAPH.function_level["sarcoreg.core.engine"]
    # a cycle is found
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, {"a", "b", "c", "d"}) == [
        frozenset({"a", "b", "c"})]


def test_no_cycle_among_module_level_imports() -> None:
    found = cycles(GRAPH.module_level, CHECKED_MODULES)
    assert not found, "import cycles at module level:\n" + "\n\n".join(_describe(c, GRAPH) for c in found)


def test_no_new_cycle_among_all_imports() -> None:
    found = cycles(GRAPH.all_edges(), CHECKED_MODULES)
    new = [c for c in found if c not in ALLOWED_CYCLES]
    assert not new, "import cycles (module and function level):\n" + "\n\n".join(_describe(c, GRAPH) for c in new)
    gone = [sorted(c) for c in ALLOWED_CYCLES if c not in found]
    assert not gone, f"these allowed cycles are gone: remove them from ALLOWED_CYCLES: {gone}"


def test_core_and_models_import_neither_plugin_nor_training() -> None:
    bad = []
    for module in sorted(CHECKED_MODULES):
        forbidden = FORBIDDEN.get(module.split(".")[1], ())
        for level, edges in (("module level", GRAPH.module_level), ("function level", GRAPH.function_level)):
            for target in sorted(edges.get(module, set())):
                if target.split(".")[1:2] and target.split(".")[1] in forbidden:
                    bad.append(f"{module} -> {target} ({level})")
    assert not bad, "imports against ARCHITECTURE.md:\n" + "\n".join(bad)
