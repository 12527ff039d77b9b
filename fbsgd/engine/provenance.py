"""What a computed result depends on: the package source it ran and the numerics stack.

The sweep cache (:mod:`fbsgd.engine.sweeps`) and the compiled kernels
(:mod:`fbsgd.engine.lockstep`) are keyed by :func:`source_hash`, so an edit to any
module a run imports, or another numpy / numba / scipy, can never be served
a result or machine code of other code.

The list of modules is derived, not maintained by hand: :func:`module_closure`
follows the package-relative imports (``from . import x``, ``from .x import y``,
``import fbsgd.x``) of a module's syntax tree, transitively.
"""
from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["module_closure", "source_hash", "stack_versions"]

_PACKAGE = "fbsgd"
_ROOT = Path(__file__).resolve().parents[1]  # the package folder


def _path(module: str) -> Path:
    rel = module.split(".")[1:]
    p = _ROOT.joinpath(*rel)
    return p / "__init__.py" if p.is_dir() else p.with_suffix(".py")


def _imports(module: str) -> set[str]:
    """Package modules imported anywhere in ``module`` (top level or inside functions)."""
    tree = ast.parse(_path(module).read_text(), filename=str(_path(module)))
    package = module if _path(module).name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != _PACKAGE:
                continue
            found.add(target)
            for alias in node.names:  # ``from . import rng`` imports the module fbsgd.rng
                if _path(f"{target}.{alias.name}").exists():
                    found.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == _PACKAGE}
    return {m for m in found if _path(m).exists()}


@lru_cache(maxsize=None)
def module_closure(module: str) -> tuple[str, ...]:
    """``module`` and every package module it imports, directly or not, sorted."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += sorted(_imports(m) - seen)
    return tuple(sorted(seen))


def stack_versions() -> str:
    """The versions of the numerics stack a result depends on."""
    import llvmlite
    import numba
    import numpy
    import scipy

    return f"numpy={numpy.__version__} numba={numba.__version__} llvmlite={llvmlite.__version__} scipy={scipy.__version__}"


@lru_cache(maxsize=None)
def source_hash(module: str = "fbsgd.engine.sweeps") -> str:
    """A hash of the source of every module in :func:`module_closure` of ``module``
    and of :func:`stack_versions` (16 hex digits)."""
    h = hashlib.sha256()
    for m in module_closure(module):
        h.update(m.encode() + b"\0" + _path(m).read_bytes() + b"\0")
    h.update(stack_versions().encode())
    return h.hexdigest()[:16]
