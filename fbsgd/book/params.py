"""Checked notebook parameters and the paper/quick scale switch.

Each chapter has a papermill ``parameters`` cell with typed, commented
defaults; a default of ``None`` means "depends on the scale".  The next cell
calls :func:`resolve`, which

* rejects names that the chapter does not know (papermill only warns),
* checks types and ranges (a list may also be given as the string of a
  Python list, ``"[0.9, 1.1]"``, which is what ``papermill -p`` passes),
* refuses a list that repeats a value (each value of a list is one
  configuration of the chapter; ``unique=False`` where a repeat means something),
* checks that a :class:`Dir` parameter names a folder that can be created
  and written (it creates the folder and writes and deletes a probe file),
* replaces ``None`` by the paper-scale or quick-scale default, the scale
  being the ``scale`` parameter or else the environment variable
  ``FBSGD_SCALE`` (``paper`` when unset),
* checks the chapter's cross-parameter and environment rules (:func:`rule`),

and raises one :class:`ParameterError` that lists every problem, before
anything is computed.
"""
from __future__ import annotations

import ast
import difflib
import inspect
import math
import os
import types
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "ParameterError",
    "Int",
    "Float",
    "Str",
    "Bool",
    "IntList",
    "FloatList",
    "StrList",
    "Dir",
    "Rule",
    "rule",
    "unwritable",
    "resolve",
    "current_scale",
    "SCALES",
]

SCALES = ("paper", "quick")
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}


class ParameterError(ValueError):
    """A notebook parameter has an unknown name, a wrong type or an out-of-range value."""

    def _render_traceback_(self):  # IPython shows only the message, not a traceback
        return [f"ParameterError: {self}"]


def current_scale(value: str | None = None) -> str:
    """The scale in force: ``value`` if given, else $FBSGD_SCALE, else 'paper'."""
    if value is None:
        value = os.environ.get("FBSGD_SCALE", "paper") or "paper"
        if value not in SCALES:
            raise ParameterError(f"environment variable FBSGD_SCALE must be one of {SCALES}, got {value!r}")
    if value not in SCALES:
        raise ParameterError(f"parameter 'scale' must be one of {SCALES}, got {value!r}")
    return value


@dataclass
class _Param:
    paper: Any = None
    quick: Any = "same"  # "same": the quick default equals the paper default
    min: float | None = None
    max: float | None = None
    help: str = ""
    allow_none: bool = False

    kind = "value"

    def default(self, scale: str):
        return self.paper if (scale == "paper" or self.quick == "same") else self.quick

    def _range(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min}")
        if self.max is not None:
            parts.append(f"<= {self.max}")
        return " and ".join(parts)

    def describe(self) -> str:
        r = self._range()
        return f"{self.kind}{' ' + r if r else ''}"

    def _in_range(self, x) -> bool:
        return (self.min is None or x >= self.min) and (self.max is None or x <= self.max)

    def check(self, v):
        """Return (ok, value) for one scalar."""
        raise NotImplementedError


class Int(_Param):
    kind = "an integer"

    def check(self, v):
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                return False, v
        return self._in_range(v), int(v)


class Float(_Param):
    kind = "a number"

    def check(self, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False, v
        v = float(v)
        return (math.isfinite(v) and self._in_range(v)), v


class Bool(_Param):
    kind = "True or False"

    def check(self, v):
        return isinstance(v, bool), v


@dataclass
class Str(_Param):
    choices: tuple = ()

    @property
    def kind(self):
        return f"one of {list(self.choices)}" if self.choices else "a string"

    def check(self, v):
        return isinstance(v, str) and (not self.choices or v in self.choices), v


@dataclass
class _List(_Param):
    """A list of values.  ``unique`` (the default): no value may repeat, since each value is one
    configuration of the chapter (one step size, seed, depth or format) and a repeated one is run
    and counted twice; ``unique=False`` where a repeat means something (the coordinates of a point).
    ``label``: the format with which the chapter names each value in its tables (``"{:g}"``); two
    values that it names alike are refused too."""

    min_len: int = 1
    max_len: int | None = None
    unique: bool = True
    label: str | None = None
    item = None

    REPEAT_REASON = ("each value is one configuration of the chapter, and a repeated one is run twice "
                     "and counted twice in its fits, averages and tables")

    def problem(self, name: str, value) -> str | None:
        """The repeated values of a checked list, as a problem naming the parameter, or None."""
        if not self.unique:
            return None
        repeated = _repeated(value)
        if repeated:
            shown = ", ".join(map(repr, repeated[:5])) + (f" and {len(repeated) - 5} more" if len(repeated) > 5 else "")
            return f"parameter {name!r} must not repeat a value (repeated: {shown}): {self.REPEAT_REASON}"
        if self.label is not None:
            names = {}
            for x in value:
                names.setdefault(self.label.format(x), []).append(x)
            alike = [(text, xs) for text, xs in names.items() if len(xs) > 1]
            if alike:
                parts = "; ".join(f"{' and '.join(map(repr, xs))} are {'both' if len(xs) == 2 else 'all'} named {text!r}"
                                  for text, xs in alike[:3])
                parts += f"; and {len(alike) - 3} more" if len(alike) > 3 else ""
                return (f"parameter {name!r} must not hold two values that the chapter names alike in its tables "
                        f"({parts}): their rows would be merged into one")
        return None

    def check(self, v):
        if isinstance(v, str):  # papermill -p passes "[0.9, 1.1]" as a string
            try:
                v = ast.literal_eval(v.strip())
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return False, v
        if not isinstance(v, (list, tuple)) or len(v) < self.min_len:
            return False, v
        if self.max_len is not None and len(v) > self.max_len:
            return False, v
        out = []
        for x in v:
            ok, x = self.item.check(self, x)
            if not ok:
                return False, v
            out.append(x)
        return True, out

    def describe(self) -> str:
        r = self._range()
        n = f"at least {self.min_len}" + (f" and at most {self.max_len}" if self.max_len else "")
        return f"a list of {n} {self.item.kind.replace('an ', '').replace('a ', '')}s{' each ' + r if r else ''}"


def _repeated(values) -> list:
    """The values that occur more than once in ``values`` (equal as Python values: 1 == 1.0), in order."""
    counts = {}
    for x in values:
        counts[x] = counts.get(x, 0) + 1
    return [x for x, n in counts.items() if n > 1]


class IntList(_List):
    item = Int


class FloatList(_List):
    item = Float


@dataclass
class StrList(_List):
    """A list of strings, each one of ``choices`` (any string when empty)."""

    choices: tuple = ()
    item = Str

    def describe(self) -> str:
        n = f"at least {self.min_len}" + (f" and at most {self.max_len}" if self.max_len else "")
        what = f"values from {list(self.choices)}" if self.choices else "strings"
        return f"a list of {n} {what}"


class Dir(Str):
    """A folder that the chapter writes to: a string naming a folder that
    exists or can be created, and in which a file can be written."""

    def problem(self, name: str, v) -> str | None:
        reason = unwritable(v)
        return None if reason is None else f"parameter {name!r} must be a writable folder, got {v!r}: {reason}"


def unwritable(path) -> str | None:
    """Why ``path`` cannot be used as an output folder, or None if it can.

    Creates the folder (with its parents) if needed, then writes and deletes a
    probe file in it, so that the answer is the operating system's."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        return "it exists and is not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create it ({_os_reason(exc, path)})"
    probe = path / f".fbsgd-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"cannot write in it ({_os_reason(exc, probe)})"
    return None


def _os_reason(exc: OSError, path) -> str:
    if not exc.strerror:
        return str(exc)
    return f"{exc.strerror}: {str(exc.filename or path)!r}"


@dataclass(frozen=True)
class Rule:
    """A check on several parameters (or on the environment), run by :func:`resolve`.

    ``test`` takes, by name, the resolved parameters it needs (a parameter with
    a default in its signature is optional: passed only if the chapter declares
    it).  With a ``message``, ``test`` returns whether all is well and the
    message, formatted with those parameters (``"got T={T}"``), is the problem;
    without one, ``test`` returns ``None`` when all is well or the problem as text.
    A rule is skipped when one of its parameters already has a problem of its own.
    """

    test: Callable
    message: str | None = None

    def names(self) -> tuple[list[str], list[str]]:
        required, optional = [], []
        for p in inspect.signature(self.test).parameters.values():
            (required if p.default is inspect.Parameter.empty else optional).append(p.name)
        return required, optional

    def problem(self, values: dict, failed: set) -> str | None:
        required, optional = self.names()
        missing = [n for n in required if n not in values]
        if missing:
            raise TypeError(f"rule {self.test!r} needs parameters {missing} that the chapter does not declare")
        names = required + [n for n in optional if n in values]
        if failed.intersection(names):
            return None
        args = {n: values[n] for n in names}
        try:
            result = self.test(**args)
        except ParameterError as exc:
            return str(exc)
        if self.message is None:
            return result or None
        return None if result else self.message.format(**args)


def rule(test: Callable, message: str | None = None) -> Rule:
    """A cross-parameter or environment check for ``resolve(..., rules=[...])``; see :class:`Rule`.
    For example::

        rule(lambda T_min, T_max: T_max > T_min,
             "parameter 'T_max' must be larger than 'T_min', got T_min={T_min}, T_max={T_max}")
    """
    return Rule(test, message)


def _is_parameter_like(name: str, value) -> bool:
    """A global that may be a (mistyped) parameter: any data that is not underscore-prefixed,
    not one of IPython's names, and not a module, class or function."""
    if name.startswith("_") or name in _IPYTHON_NAMES:
        return False
    return not (isinstance(value, (types.ModuleType, type)) or callable(value))


def _user_names(namespace: dict) -> set[str]:
    """Globals that look like parameters (see :func:`_is_parameter_like`)."""
    return {k for k, v in namespace.items() if _is_parameter_like(k, v)}


def resolve(namespace: dict, rules=(), **spec: _Param) -> dict:
    """Check and complete the parameters found in ``namespace`` (a notebook's globals).

    ``spec`` maps each allowed name to its declaration.  ``scale`` is always
    allowed.  ``rules`` are :class:`Rule` checks on several parameters or on the
    environment, run on the resolved values.  Every problem goes into one
    :class:`ParameterError`; otherwise the resolved values are written back
    into ``namespace`` and returned.
    """
    problems, failed = [], set()
    allowed = set(spec) | {"scale"}
    for name in sorted(_user_names(namespace) - allowed):
        hint = difflib.get_close_matches(name, allowed, n=1)
        problems.append(f"unknown parameter {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))

    try:
        scale = current_scale(namespace.get("scale"))
    except ParameterError as exc:
        problems.append(str(exc))
        scale = "paper"
        failed.add("scale")

    resolved = {"scale": scale}
    for name, decl in spec.items():
        v = namespace.get(name, None)
        if v is None:
            if decl.allow_none:
                resolved[name] = None
                continue
            v = decl.default(scale)
        ok, value = decl.check(v)
        problem = None if ok else f"parameter {name!r} must be {decl.describe()}, got {v!r}"
        if problem and isinstance(decl, _List) and isinstance(v, str):
            problem += f' (a list is written as in Python: -p {name} "[x, y]", or as YAML: -y "{name}: [x, y]")'
        if problem is None and hasattr(decl, "problem"):
            problem = decl.problem(name, value)
        if problem is not None:
            problems.append(problem)
            failed.add(name)
        resolved[name] = value

    for r in rules:
        problem = r.problem(resolved, failed)
        if problem:
            problems.append(problem)

    if problems:
        allowed_list = ", ".join(sorted(allowed))
        raise ParameterError("; ".join(problems) + f". This chapter's parameters are: {allowed_list}.")
    namespace.update(resolved)
    return resolved
