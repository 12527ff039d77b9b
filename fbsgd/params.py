"""Checked notebook parameters and the paper/quick scale switch.

Each chapter has a papermill ``parameters`` cell with typed, commented
defaults; a default of ``None`` means "depends on the scale".  The next cell
calls :func:`resolve`, which

* rejects names that the chapter does not know (papermill only warns),
* checks types and ranges,
* replaces ``None`` by the paper-scale or quick-scale default, the scale
  being the ``scale`` parameter or else the environment variable
  ``FBSGD_SCALE`` (``paper`` when unset),

and raises one :class:`ParameterError` that lists every problem.
"""
from __future__ import annotations

import difflib
import math
import os
import types
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ParameterError",
    "Int",
    "Float",
    "Str",
    "Bool",
    "IntList",
    "FloatList",
    "StrList",
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
    min_len: int = 1
    max_len: int | None = None
    item = None

    def check(self, v):
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


def _user_names(namespace: dict) -> set[str]:
    """Globals that look like parameters: plain data, not underscore-prefixed."""
    data = (int, float, str, bool, list, tuple, type(None))
    return {
        k
        for k, v in namespace.items()
        if not k.startswith("_") and k not in _IPYTHON_NAMES and isinstance(v, data) and not isinstance(v, types.ModuleType)
    }


def resolve(namespace: dict, **spec: _Param) -> dict:
    """Check and complete the parameters found in ``namespace`` (a notebook's globals).

    ``spec`` maps each allowed name to its declaration.  ``scale`` is always
    allowed.  Resolved values are written back into ``namespace`` and returned.
    """
    problems = []
    allowed = set(spec) | {"scale"}
    for name in sorted(_user_names(namespace) - allowed):
        hint = difflib.get_close_matches(name, allowed, n=1)
        problems.append(f"unknown parameter {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))

    try:
        scale = current_scale(namespace.get("scale"))
    except ParameterError as exc:
        problems.append(str(exc))
        scale = "paper"

    resolved = {"scale": scale}
    for name, decl in spec.items():
        v = namespace.get(name, None)
        if v is None:
            if decl.allow_none:
                resolved[name] = None
                continue
            v = decl.default(scale)
        ok, value = decl.check(v)
        if not ok:
            problems.append(f"parameter {name!r} must be {decl.describe()}, got {v!r}")
        resolved[name] = value

    if problems:
        allowed_list = ", ".join(sorted(allowed))
        raise ParameterError("; ".join(problems) + f". This chapter's parameters are: {allowed_list}.")
    namespace.update(resolved)
    return resolved
