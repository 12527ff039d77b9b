"""The house rules of the package (ARCHITECTURE.md), checked on the syntax trees.

Floors, from the bottom: the library (fbsgd's top-level modules) ← theory ← engine ←
book ← studies.  A module imports only from its own floor or the floors below it,
the import graph has no cycle, and a package import inside a function carries a
comment that says why (``# deferred: …`` on its line or the line above).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fbsgd

PACKAGE = Path(fbsgd.__file__).resolve().parent
FLOORS = ["library", "theory", "engine", "book", "studies"]
LIBRARY = {"operators", "passes", "perturbations", "laws", "lowprec", "rng", "regularizers", "problems",
           "optimizers", "metrics", "vecmath", "correctors", "formats"}
CHAPTER_PREFIXES = ("fg_", "sgdd_", "corrector_", "mechanism_", "propagation_", "budget_", "rate_",
                    "counterexample_", "section7_", "setting_")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] not in FLOORS[1:]:
        return "library"
    return parts[1]


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str, path: Path, known: dict) -> list[tuple[str, int, bool, str]]:
    """(imported module, line, inside a function, the lines of code around it) for every package import."""
    src = path.read_text()
    lines = src.splitlines()
    tree = ast.parse(src)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    in_function = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    type_checking = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking |= {id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                targets.append(sub if sub in known else mod)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        context = "\n".join(lines[max(0, getattr(node, "lineno", 1) - 2): getattr(node, "end_lineno", 1)])
        for t in targets:
            if t.split(".")[0] == "fbsgd" and t != module and t in known and id(node) not in type_checking:
                out.append((t, node.lineno, id(node) in in_function, context))
    return out


MODULES = _modules()
EDGES = {m: _imports(m, p, MODULES) for m, p in MODULES.items()}


def test_the_top_level_holds_the_library_and_the_four_floors():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top == LIBRARY, f"top-level modules {sorted(top ^ LIBRARY)} are not the library's"
    assert folders == set(FLOORS[1:])
    assert not [m for m in top if m.startswith(CHAPTER_PREFIXES)]


def test_nothing_imports_upward():
    upward = [f"{m} (floor {floor_of(m)}) imports {t} (floor {floor_of(t)}) at line {line}"
              for m, edges in EDGES.items() for t, line, _, _ in edges
              if m != "fbsgd" and FLOORS.index(floor_of(t)) > FLOORS.index(floor_of(m))]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = {m: sorted({t for t, *_ in edges if not t == "fbsgd"}) for m, edges in EDGES.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in graph.get(m, []):
            if t in MODULES and MODULES[t].name == "__init__.py" and m.startswith(t + "."):
                continue  # a module of a package may use its package's namespace
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" → ".join(c) for c in cycles)


def test_function_local_package_imports_say_why():
    silent = [f"{m}:{line} imports {t} inside a function without a '# deferred: <reason>' comment"
              for m, edges in EDGES.items() for t, line, local, context in edges
              if local and "# deferred:" not in context]
    assert not silent, "\n".join(silent)


@pytest.mark.parametrize("floor", FLOORS[2:])
def test_every_floor_has_a_docstring_that_says_what_it_holds(floor):
    doc = ast.get_docstring(ast.parse((PACKAGE / floor / "__init__.py").read_text()))
    assert doc and len(doc.split()) >= 10


def test_the_checker_finds_an_upward_import_and_a_cycle(tmp_path):
    """The rules above can fail: a synthetic package with an upward import and a cycle."""
    assert floor_of("fbsgd.engine.sweeps") == "engine" and floor_of("fbsgd.rng") == "library"
    assert FLOORS.index(floor_of("fbsgd.studies.x")) > FLOORS.index(floor_of("fbsgd.theory.y"))
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from fbsgd.engine import sweeps\n")
    known = {"fbsgd.engine.sweeps": src, "fbsgd.engine": src}
    found = _imports("fbsgd.theory.m", src, known)
    assert found and found[0][0] == "fbsgd.engine.sweeps" and found[0][2] is True
    assert "# deferred:" not in found[0][3]
