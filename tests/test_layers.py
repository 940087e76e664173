"""The package's layers: no module imports a higher layer, no cycles between subpackages.

Layers, lowest first (a module may import its own layer or lower ones):

1. core: ``neurorec`` itself, ``core``, ``spec``, ``data``, ``datasets``, ``stimuli``, ``tasks``
2. ``fit`` (generic solvers and training engine)
3. ``analysis`` (pure analyses on arrays)
4. ``report`` (figures, html)
5. ``families``, ``backends`` and ``sklearn`` (estimator facades over the solvers)
6. ``workflows``
7. ``cli``

Every ``import`` / ``from ... import`` of a neurorec module counts, function-level lazy imports
included, relative imports resolved; imports inside ``if TYPE_CHECKING:`` are not executed and
do not count. ``importlib.import_module`` by name (``neurorec/spec/base.py`` discovering the
families, a plugin hook) is not a static import. This test is the enforcement; there is no
import-linter configuration.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "neurorec"

LAYERS = {
    "": 1, "core": 1, "spec": 1, "data": 1, "datasets": 1, "stimuli": 1, "tasks": 1,
    "fit": 2,
    "analysis": 3,
    "report": 4,
    "families": 5, "backends": 5, "sklearn": 5,  # the scikit-learn facade over fit/ and core/
    "workflows": 6,
    "cli": 7,
}

#: Upward imports in files this test's owner may not edit (``neurorec/families/``,
#: ``neurorec/cli.py``); each pair is allowed exactly, any other violation fails.
#: Remove a pair once its import is fixed.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def top(module: str) -> str:
    """The top-level subpackage of a neurorec module ('' for ``neurorec`` itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer(module: str) -> int:
    name = top(module)
    assert name in LAYERS, f"{module}: top-level module {name!r} has no layer; add it to LAYERS"
    return LAYERS[name]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if is_package else module.rpartition(".")[0]
    base = package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path | None = None) -> list[str]:
    """The neurorec modules ``module`` (in ``path``, default its file) imports, outside
    ``if TYPE_CHECKING:`` blocks."""
    path = path or MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:  # ``from neurorec import datasets`` imports a module
                sub = f"{source}.{alias.name}"
                found.append(sub if sub in MODULES else source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return sorted({m for m in found if m == "neurorec" or m.startswith("neurorec.")})


IMPORTS = {module: imports_of(module) for module in MODULES}


def violations() -> list[tuple[str, str]]:
    return [(module, imported) for module, targets in IMPORTS.items() for imported in targets
            if layer(imported) > layer(module)]


def test_every_module_has_a_layer():
    for module in [*MODULES, *(m for targets in IMPORTS.values() for m in targets)]:
        layer(module)


def test_no_module_imports_a_higher_layer():
    found = violations()
    new = [pair for pair in found if pair not in KNOWN_VIOLATIONS]
    assert not new, "upward imports:\n" + "\n".join(
        f"  {m} -> {i} (layer {layer(m)} -> layer {layer(i)})" for m, i in new)
    stale = KNOWN_VIOLATIONS - set(found)
    assert not stale, f"KNOWN_VIOLATIONS no longer occur, remove them: {sorted(stale)}"


def test_no_import_cycles_between_subpackages():
    graph: dict[str, set[str]] = {}
    for module, targets in IMPORTS.items():
        for imported in targets:
            if top(imported) != top(module):
                graph.setdefault(top(module) or "neurorec", set()).add(top(imported) or "neurorec")
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    assert not cycles, "import cycles between subpackages:\n" + "\n".join(
        "  " + " -> ".join(c) for c in cycles)


def test_the_checker_sees_lazy_relative_and_type_checking_imports(tmp_path):
    """The parser itself: a function-level import counts, TYPE_CHECKING does not."""
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
              "    from neurorec.workflows import pipeline\n"
              "def f():\n    from ..families import base\n    import neurorec.cli\n")
    path = tmp_path / "probe.py"
    path.write_text(source, encoding="utf-8")
    got = imports_of("neurorec.analysis.probe", path)
    assert got == ["neurorec.cli", "neurorec.families.base"]


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_core_imports_do_not_pull_in_the_families():
    out = _run("import sys\nimport neurorec.spec, neurorec.data, neurorec.core.metrics\n"
               "print(sorted(m for m in sys.modules if m.startswith('neurorec.families')))")
    assert out == "[]", f"importing spec/data/core.metrics imported {out}"


def test_importing_the_families_keeps_matplotlib_backend():
    out = _run("import matplotlib\nmatplotlib.use('svg')\nimport neurorec.families\n"
               "import neurorec.report.figures, neurorec.workflows.pipeline, neurorec.cli\n"
               "print(matplotlib.get_backend())")
    assert out == "svg"
