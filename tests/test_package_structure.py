"""The package reads by stage (docs/architecture.md): few root modules, no import cycle, every
dependency of a module visible at its top, and files and functions short enough to read.

The checks parse the source (``ast``) rather than importing it, so they see every import
statement, including those inside functions, whatever path a test happens to execute.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = "collapse_spectroscopy"
SRC = ROOT / "src" / PKG
ARCHITECTURE = ROOT / "docs" / "architecture.md"

MAX_ROOT_MODULES = 6
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80
# the third-party libraries whose import costs a process a second or more (torch, numba),
# or that a command not drawing, fitting or reading rasters should not load (matplotlib,
# scipy, rasterio, pyproj; a training job loads none of them, tests/jobs/test_batched_chunks.py):
# the only reason a project import may sit inside a function
HEAVY = ("torch", "numba", "matplotlib", "scipy", "rasterio", "pyproj")
LAZY_MARK = re.compile(r"#\s*lazy:\s*\S")
# the stages in the order a run flows (docs/architecture.md, "Packages"): a package imports
# (at import time) only from a lower layer, which rules out cycles between packages
LAYERS = {
    "errors": 0,
    "store": 1,
    "models": 1,
    "config": 2,
    "datasets": 3,
    "analysis": 3,
    "maps": 3,
    "training": 4,
    "jobs": 5,
    "figures": 5,
    "studies": 5,
    "cli": 6,
}


def modules() -> dict[str, Path]:
    """Dotted name (without the package prefix; '' for the root) -> file."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = modules()


def package_of(name: str) -> str:
    path = MODULES[name]
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def resolve(name: str, node: ast.ImportFrom) -> list[str]:
    """The project modules an import statement of module ``name`` loads (its own module,
    and each imported name that is itself a module)."""
    if node.level:
        base = package_of(name).split(".") if package_of(name) else []
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    elif node.module == PKG or (node.module or "").startswith(PKG + "."):
        target = node.module[len(PKG) + 1 :]
    else:
        return []
    out = [target] if target in MODULES else []
    for alias in node.names:
        sub = f"{target}.{alias.name}" if target else alias.name
        if sub in MODULES:
            out.append(sub)
    return out or [target]


def imports(name: str):
    """(statement, loaded project modules, inside a function?) for each project import."""
    tree = ast.parse(MODULES[name].read_text())
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            inside.update(id(n) for n in ast.walk(fn) if n is not fn)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            targets = resolve(name, node)
            if targets:
                yield node, targets, id(node) in inside
        elif isinstance(node, ast.Import):
            targets = [a.name[len(PKG) + 1 :] for a in node.names if a.name.startswith(PKG)]
            if targets:
                yield node, targets, id(node) in inside


def top_level_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports at import time (its parent packages too:
    importing ``a.b`` runs ``a/__init__.py``)."""
    graph = {}
    for name in MODULES:
        deps = set()
        for _, targets, nested in imports(name):
            if nested:
                continue
            for t in targets:
                parts = t.split(".")
                deps.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        # a submodule importing its siblings runs its own package's __init__, which is
        # already being imported: not a cycle
        parts = name.split(".")
        deps -= {".".join(parts[:i]) for i in range(0, len(parts) + 1)}
        graph[name] = {d for d in deps if d in MODULES}
    return graph


def heavy_at_import(name: str, graph, seen=None) -> set[str]:
    """The heavy libraries importing module ``name`` loads (transitively)."""
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    tree = ast.parse(MODULES[name].read_text())
    found = set()
    for node in tree.body:  # top-level statements only: what importing runs
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    found &= set(HEAVY)
    for dep in graph[name]:
        found |= heavy_at_import(dep, graph, seen)
    return found


def test_the_root_holds_few_modules():
    root = sorted(p.name for p in SRC.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root
    # and a new top-level package is a stage, with its docstring saying what it holds
    for init in SRC.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text())), init


def test_the_checks_see_the_package():
    """The checks below would pass on an empty package: make sure they see this one."""
    graph = top_level_graph()
    assert len(MODULES) > 80
    assert "analysis.pca" in graph["jobs.measure_point"]
    assert "jobs.measure_point" in graph["jobs.train_job"]
    assert "torch" in heavy_at_import("training.scan_point", graph)
    assert heavy_at_import("config.settings", graph) == set()


def test_no_import_cycle():
    graph = top_level_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_packages_import_only_lower_layers():
    graph = top_level_graph()
    stage = {name: name.split(".")[0] for name in MODULES if name}
    assert set(stage.values()) == set(LAYERS), "a package is missing from LAYERS"
    problems = [
        f"{name} ({stage[name]}) imports {dep} ({stage[dep]})"
        for name, deps in graph.items()
        if name
        for dep in deps
        if stage[dep] != stage[name] and LAYERS[stage[dep]] >= LAYERS[stage[name]]
    ]
    assert not problems, "\n".join(problems)


def test_project_imports_sit_at_the_top_unless_they_defer_a_heavy_library():
    """An import inside a function hides what a module depends on; the one reason for it
    is to keep a heavy library out of a process that does not need it, which the line (or
    the one above) says with ``# lazy: why``, and which must be true: the imported module
    does load one of :data:`HEAVY` that the importing module does not load already."""
    graph = top_level_graph()
    problems = []
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        own = heavy_at_import(name, graph)
        for node, targets, nested in imports(name):
            if not nested:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            marked = any(
                LAZY_MARK.search(lines[i])
                for i in {node.lineno - 2, node.lineno - 1, node.end_lineno - 1}
                if i >= 0
            )
            deferred = set().union(*(heavy_at_import(t, graph) for t in targets if t in graph))
            if not marked:
                problems.append(f"{where}: a project import inside a function, not marked lazy:")
            elif not deferred - own:
                problems.append(f"{where}: marked lazy: but defers no heavy library")
    assert not problems, "\n".join(problems)


def long_exceptions() -> set[str]:
    """``path:function`` entries the architecture page lists as allowed to be long."""
    text = ARCHITECTURE.read_text()
    section = text.split("### Long on purpose", 1)
    if len(section) < 2:
        return set()
    return set(re.findall(r"`(src/[\w/]+\.py:\w+)`", section[1].split("\n## ", 1)[0]))


def test_files_and_functions_are_short():
    allowed = long_exceptions()
    problems = []
    for path in MODULES.values():
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if text.count("\n") > MAX_FILE_LINES:
            problems.append(f"{rel}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                length = node.end_lineno - start + 1
                key = f"{rel}:{node.name}"
                if length > MAX_FUNCTION_LINES and key not in allowed:
                    problems.append(f"{key}: {length} lines")
    assert not problems, "\n".join(problems)
