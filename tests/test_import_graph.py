"""The engine's import graph, read statically: no cycles, no Qt, and training/evaluation below methods/jobs.

Imports inside functions count too: a function-level import that only dodges a cycle still
ties the two modules together, and it hides the tie from a reader. Imports under
``if TYPE_CHECKING:`` do not count: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "shpers_core"
GUI_PACKAGES = ("PySide6", "pyqtgraph", "shpers_gui")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def engine_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ENGINE.rglob("*.py"))}


def is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"
        or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_nodes(tree: ast.AST):
    """Every node that can run, functions included; ``if TYPE_CHECKING:`` blocks never run, so no cycle."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node) if not is_type_checking(child))


def imported_names(path: Path, module: str) -> set[str]:
    """Every module name ``path`` imports, anywhere in the file (absolute, relative made absolute)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one, else a
            # name of ``pkg`` itself: :func:`resolve` takes the longest prefix that is a module.
            out.update(f"{prefix}.{alias.name}" for alias in node.names)
    return out


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The engine module ``name`` refers to (its longest known prefix), or None for outside ones."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Engine module -> engine modules it imports, and engine module -> every name it imports."""
    modules = engine_modules()
    graph: dict[str, set[str]] = {}
    raw: dict[str, set[str]] = {}
    for module, path in modules.items():
        names = imported_names(path, module)
        raw[module] = names
        targets = {resolve(n, modules) for n in names}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph, raw


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_engine_has_no_import_cycle():
    graph, _ = import_graph()
    found = cycles(graph)
    assert not found, "import cycles in shpers_core:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_engine_imports_no_gui():
    _, raw = import_graph()
    bad = sorted(f"{module} imports {name}" for module, names in raw.items() for name in names
                 if name.split(".")[0] in GUI_PACKAGES)
    assert not bad, "the engine must run without Qt:\n" + "\n".join(bad)


@pytest.mark.parametrize("lower", ["shpers_core.training", "shpers_core.evaluation"])
def test_training_and_evaluation_sit_below_methods_and_jobs(lower):
    graph, _ = import_graph()
    upper = ("shpers_core.methods", "shpers_core.jobs")
    bad = sorted(f"{module} imports {target}" for module, targets in graph.items()
                 if module == lower or module.startswith(lower + ".")
                 for target in targets if any(target == u or target.startswith(u + ".") for u in upper))
    assert not bad, f"{lower} must not import methods/ or jobs/:\n" + "\n".join(bad)


def test_the_graph_sees_function_level_imports(tmp_path, monkeypatch):
    """The walker counts an import inside a function, so a lazy import cannot hide a cycle; a type-only one is no edge."""
    src = tmp_path / "shpers_core"
    src.mkdir()
    (src / "__init__.py").write_text("")
    (src / "a.py").write_text("def f():\n    from shpers_core import b\n")
    (src / "b.py").write_text("from typing import TYPE_CHECKING\nfrom shpers_core.a import f\n"
                              "if TYPE_CHECKING:\n    from shpers_core import c\n")
    (src / "c.py").write_text("from shpers_core import b\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    monkeypatch.setattr(f"{__name__}.ENGINE", src)
    graph, _ = import_graph()
    assert cycles(graph) == [["shpers_core.a", "shpers_core.b"]]


def test_every_import_of_our_own_names_resolves():
    """A function-level import runs only when its function does: a name that moved (in a merge, a
    refactor) fails there, mid-job, not at start-up. Check each ``from shpers_core/shpers_gui ... import``."""
    import importlib

    missing = []
    for path in sorted(ENGINE.rglob("*.py")) + sorted((ROOT / "shpers_gui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                    and node.module.split(".")[0] in ("shpers_core", "shpers_gui")):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name == "*" or hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module} has no {alias.name}")
    assert not missing, "\n".join(missing)


# Function-level imports of engine modules kept for start-up time, each with its ``# lazy:`` comment:
# the importing module is read on a start-up path (the app's forms, the CLI's table and export
# commands) and the imported one loads torch or transformers. Anything else imports at the top.
LAZY_ENGINE_IMPORTS = {
    "shpers_core.cli.chat_cmd": {"shpers_core.jobs.chat"},
    "shpers_core.cli.effect_cmd": {"shpers_core.jobs.spec"},
    "shpers_core.cli.executor_args": {"shpers_core.distributed.ray_executor", "shpers_core.jobs.runner"},
    "shpers_core.cli.runs_cmd": {"shpers_core.export", "shpers_core.jobs.spec"},
    "shpers_core.evaluation.embedding": {"shpers_core.models.device"},
    "shpers_core.export": {"shpers_core.jobs.runner", "shpers_core.jobs.spec", "shpers_core.training.adapters",
                           "shpers_core.export.merged", "shpers_core.export.gguf_lora", "shpers_core.models",
                           "shpers_core.models.smollm2"},
    "shpers_core.jobs.process": {"shpers_core.jobs.runner"},
    "shpers_core.models": {"shpers_core.models.tiny"},
    "shpers_core.models.registry": {"shpers_core.models.smollm2", "shpers_core.models.tiny",
                                    "shpers_core.models.pretrained", "shpers_core.models.quiet"},
}


def function_level_imports(path: Path):
    """(import node, is it the first of a run of imports, the file's lines) for each import inside a function."""
    lines = path.read_text(encoding="utf-8").splitlines()

    def walk(node: ast.AST, in_function: bool):
        for attr in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, attr, None)
            if not isinstance(block, list):
                continue
            for i, child in enumerate(block):
                if is_type_checking(child):
                    continue
                if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                    yield child, i == 0 or not isinstance(block[i - 1], (ast.Import, ast.ImportFrom))
                yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    tree = ast.parse("\n".join(lines), filename=str(path))
    for node, first in walk(tree, False):
        yield node, first, lines


def has_lazy_comment(node: ast.stmt, lines: list[str], block_start: dict[int, int]) -> bool:
    """``# lazy:`` on the import's own lines, or in the comment lines right above its run of imports."""
    if any("# lazy:" in lines[i] for i in range(node.lineno - 1, node.end_lineno)):
        return True
    i = block_start[node.lineno] - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        if lines[i].strip().startswith("# lazy:"):
            return True
        i -= 1
    return False


def lazy_import_problems() -> tuple[list[str], dict[str, set[str]]]:
    """Engine imports inside functions without a ``# lazy:`` comment, and every engine module imported inside a function."""
    modules = engine_modules()
    bad: list[str] = []
    engine_targets: dict[str, set[str]] = {}
    for module, path in modules.items():
        block_start: dict[int, int] = {}
        start = 0
        for node, first, lines in function_level_imports(path):
            start = node.lineno if first else start
            block_start[node.lineno] = start
            single = ast.Module(body=[node], type_ignores=[])
            names = imported_names_of(single, path, module)
            targets = {t for t in (resolve(n, modules) for n in names) if t is not None}
            if not targets:
                continue  # a third-party package: lazy where its start-up cost matters, with a comment saying so
            engine_targets.setdefault(module, set()).update(targets)
            if not has_lazy_comment(node, lines, block_start):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return bad, engine_targets


def imported_names_of(tree: ast.AST, path: Path, module: str) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
            out.update(f"{prefix}.{alias.name}" for alias in node.names)
    return out


def test_function_level_imports_of_the_engine_are_only_the_lazy_ones():
    """An engine module imported inside a function only dodges a cycle or hides a layering mistake,
    unless it keeps torch or transformers off a start-up path: those few are listed and commented."""
    bad, engine_targets = lazy_import_problems()
    assert not bad, "function-level imports of engine modules need a `# lazy:` comment saying why:\n" + "\n".join(bad)
    extra = sorted(f"{module} imports {target} inside a function" for module, targets in engine_targets.items()
                   for target in targets - LAZY_ENGINE_IMPORTS.get(module, set()))
    assert not extra, ("import these at the top of the module (a cycle it makes is a layering mistake to fix), "
                       "or add them to LAZY_ENGINE_IMPORTS with the start-up reason:\n" + "\n".join(extra))
