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
import os
import tempfile
from functools import lru_cache
from pathlib import Path

__all__ = ["module_closure", "source_hash", "stack_versions", "kernel_dir", "machine_code_dir", "cache_machine_code",
           "defining_modules", "objects_hash"]

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


def defining_modules(*objects) -> set[str]:
    """The fbsgd modules that define the class of ``objects`` or of any object inside them (dataclass
    fields, instance attributes, lists, tuples, sets and dict values, recursively): the code a
    configuration's perturbation objects run.  A kind of ``fbsgd.correctors`` or ``fbsgd.formats`` is not
    imported by the engine, so the engine's own :func:`source_hash` does not see an edit to it."""
    found, seen, todo = set(), set(), list(objects)
    while todo:
        o = todo.pop()
        if o is None or isinstance(o, (str, bytes, int, float, complex, bool)) or id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, dict):
            todo += list(o.values())
            continue
        if isinstance(o, (list, tuple, set, frozenset)):
            todo += list(o)
            continue
        module = getattr(type(o), "__module__", "") or ""
        if module.split(".")[0] == _PACKAGE and _path(module).exists():
            found.add(module)
        attrs = getattr(o, "__dict__", None)
        if isinstance(attrs, dict):
            todo += list(attrs.values())
        for slot in getattr(type(o), "__slots__", ()) or ():
            todo.append(getattr(o, slot, None))
    return found


def objects_hash(objects, engine_module: str = "fbsgd.engine.sweeps") -> str:
    """"" when every fbsgd class among ``objects`` (:func:`defining_modules`) lives in a module the engine
    already hashes (:func:`module_closure` of ``engine_module``); else a hash of the source of the other
    modules' closures, so that an edit to, say, a corrector's code gives new cache keys."""
    extra = tuple(sorted(defining_modules(*objects) - set(module_closure(engine_module))))
    return _modules_hash(extra) if extra else ""


@lru_cache(maxsize=None)
def _modules_hash(modules: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for m in sorted(set().union(*(module_closure(e) for e in modules))):
        h.update(m.encode() + b"\0" + _path(m).read_bytes() + b"\0")
    return "+" + h.hexdigest()[:16]


# ---------------------------------------------------------------------------
# numba's machine-code cache, keyed by the source hash
# ---------------------------------------------------------------------------


def kernel_dir() -> Path:
    """$FBSGD_KERNEL_DIR, else ~/.cache/fbsgd/kernels (where the compiled engines keep machine code)."""
    env = os.environ.get("FBSGD_KERNEL_DIR")
    return Path(env) if env else Path.home() / ".cache" / "fbsgd" / "kernels"


def machine_code_dir(module: str, prefix: str) -> Path:
    """The folder of ``module``'s machine code: ``kernel_dir()/<prefix>-<source hash of module>``."""
    return kernel_dir() / f"{prefix}-{source_hash(module)}"


def cache_machine_code(module: str, py_file: str, prefix: str) -> None:
    """Make numba keep the machine code of the ``@njit(cache=True)`` functions of the file ``py_file``
    (the module ``module``) in :func:`machine_code_dir` and stamp it with the module's
    :func:`source_hash`, so an edit to any fbsgd module the file reaches, or another numerics stack,
    never runs old machine code.  A folder that cannot be written: a temporary one (the cache lasts one
    process).  Called once, at the top of the file, before its first cached function."""
    from numba.core import caching  # deferred: numba is imported only by the files that compile

    this_file = os.path.abspath(py_file)

    class Locator(caching._CacheLocator):
        def __init__(self, py_func, path):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = path

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            return source_hash(module)

        def get_disambiguator(self):
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.abspath(py_file) != this_file:
                return None
            self = cls(py_func, str(machine_code_dir(module, prefix)))
            try:
                self.ensure_cache_path()
            except OSError:
                self = cls(py_func, tempfile.mkdtemp(prefix=f"fbsgd-{prefix}-"))
            return self

    Locator.__name__ = Locator.__qualname__ = f"FbsgdLocator_{prefix}"
    # numba's list of locators is not a public API; without it numba's own locator (the file's own stamp)
    # would apply, so its absence is an error rather than a silent loss of the source-hash guarantee
    locators = caching.CacheImpl._locator_classes
    locators[:] = [c for c in locators if c.__name__ != Locator.__name__]
    locators.insert(0, Locator)
