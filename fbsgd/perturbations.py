"""Perturbations δ (forward) and ε (backward) as small composable objects.

In the spirit of optax's gradient transformations, a perturbation is a pure
object with explicit state:

>>> p = every(10, zero_mean_uniform(sigma=1.0, dim=10))
>>> state = p.init(seed)
>>> y_tilde, state = p(y, state)  # ỹ = y + δ; the state advances one step

A :class:`Plan` places perturbations in a chain: ``forward[i]`` acts on the
output of operator i (eq. 5a), ``backward[i]`` on the intermediate gradient
that operator i sends back (eq. 5b).

The protocol
------------
Everything the rest of fbsgd needs to know about a perturbation it asks the
object, never its class:

* ``p.law``: a :class:`Law`, what δ = P(x) − x is when the perturbation
  acts: its family, mean, second and fourth moments where known, whether
  E[δ | x] = 0, whether δ is additive (its law independent of x) or depends
  on the input (rounding, compression, bit flips), and a deterministic bound
  ``|δ| ≤ bound + relative_bound·|x|`` where one exists;
* ``p.schedule``: a :class:`Schedule`, at which steps it acts (first step,
  interval, last step, or an explicit set), ``count(T)``;
* ``p.compiled()``: a :class:`CompiledOp` telling the compiled engine what to
  compute, or a ``NotImplementedError`` that says why not;
* ``p.conditional_law(x)``: the law of P(x) *given* the input x, entry by entry (a
  :class:`fbsgd.laws.ConditionalLaw`): exact where the support is finite (rounding, Top-K,
  Rand-K, bit flips, constants), closed form for additive noise, and by default a Monte Carlo
  estimate from the kind's own ``apply``;
* ``p.init(seed)``: a :class:`PerturbationState` (stream key, step, memory);
  ``p(x, state)`` returns ``(P(x), new_state)``, a pure function of (state, x).

A kind without memory implements ``apply(x, key, step)``; a kind with memory
(error feedback keeps a residual) implements ``transform(x, key, step, memory)
-> (out, memory)``.  Random numbers come from the counter-based streams of
:mod:`fbsgd.rng`, so a draw at step ``t`` is a pure function of the key and t.

Nothing of this is taken on trust: a :class:`Law` refuses impossible fields when it is built,
:func:`check` compares what a kind declares (law, conditional law, schedule, compiled form) with
what its ``apply`` does on sample inputs, and :func:`check_compiled` raises where the compiled
form and ``apply`` differ.

Kinds
-----
* additive: ``UniformNoise``, ``GaussianNoise``, ``TwoPointNoise``, ``Constant``;
* ``Round``: rounding to bfloat16 / float16 / float8 (nearest or stochastic);
* ``BitFlip``: independent bit flips in the float32 pattern of each entry;
* ``TopK``, ``RandK``: compressors (per sample or across the batch);
* ``ErrorFeedback``: EF-SGD around a compressor (memory: the residual);
* composition: ``Every``, ``AtSteps`` (``budget``), ``Chain``.

Identity
--------
:func:`canonical` writes a perturbation as one text that is equal for equal
objects and never depends on the process (sets sorted, numbers normalised, no
memory addresses); a researcher's own kind also carries a hash of its class's
code.  The sweep cache keys and random streams (:mod:`fbsgd.engine.sweeps`) are built
from it.
"""
from __future__ import annotations

import dataclasses as _dc
import functools
import hashlib
import inspect
import math
import sys
import types
from dataclasses import dataclass, field, replace
from typing import Mapping, NamedTuple

import numpy as np

from fbsgd import laws, lowprec, rng

__all__ = [
    "Law",
    "LAW_FAMILIES",
    "Schedule",
    "CompiledOp",
    "PerturbationState",
    "Perturbation",
    "Identity",
    "UniformNoise",
    "GaussianNoise",
    "TwoPointNoise",
    "Constant",
    "Round",
    "BitFlip",
    "TopK",
    "RandK",
    "CompressorWithMemory",
    "ErrorFeedback",
    "Every",
    "AtSteps",
    "Chain",
    "chain",
    "every",
    "at_steps",
    "budget",
    "zero_mean_uniform",
    "nonzero_mean_uniform",
    "measure",
    "check",
    "check_compiled",
    "nested_kinds",
    "canonical",
    "Plan",
]


# ---------------------------------------------------------------------------
# argument checks shared by the constructors
# ---------------------------------------------------------------------------


def _finite(owner: str, name: str, v, *, min: float | None = None) -> float:
    """``v`` as a float, or a ValueError naming the owner and the argument."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ValueError(f"{owner} needs a finite number for {name}, got {v!r}")
    if min is not None and v < min:
        raise ValueError(f"{owner} needs {name} >= {min:g}, got {v!r}")
    return float(v)


def _integer(owner: str, name: str, v, *, min: int) -> int:
    """``v`` as an int (an integral float is accepted), or a ValueError naming the argument."""
    integral = isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer())
    if isinstance(v, bool) or not integral or v < min:
        raise ValueError(f"{owner} needs an integer {name} >= {min}, got {v!r}")
    return int(v)


def _choice(owner: str, name: str, v, allowed) -> str:
    if v not in allowed:
        raise ValueError(f"{owner}: {name} must be one of {list(allowed)}, got {v!r}")
    return v


# ---------------------------------------------------------------------------
# what a perturbation says about itself
# ---------------------------------------------------------------------------


LAW_FAMILIES = ("identity", "uniform", "gaussian", "two_point", "constant", "sum", "input_dependent")
"""The families a :class:`Law` may name."""

_LAW_RTOL = 1e-9  # slack of the consistency checks of a Law (rounding in the moments' formulas)


@dataclass(frozen=True)
class Law:
    """The law of one entry of δ = P(x) − x at a step where the perturbation acts.

    * ``family``: one of :data:`LAW_FAMILIES`: "identity", "uniform", "gaussian", "two_point",
      "constant", "sum" (a chain of additive kinds), or "input_dependent";
    * ``additive``: δ is drawn independently of x (its law does not depend on x);
    * ``zero_mean``: E[δ | x] = 0 for every input x (unbiased);
    * ``mean``, ``second_moment``, ``fourth_moment``: E δ, E δ², E δ⁴ of one entry, when known;
    * ``per_sample``: independent draws per entry; False: one draw per feature shared by the batch;
    * ``bound``, ``relative_bound``: ``|δ| ≤ bound + relative_bound·|x|`` surely (bound None: no such
      bound; relative_bound None: no bound of this form is known);
    * ``support``: (low, high) of δ for the uniform family (closed forms use it).

    A law checks itself when it is built and refuses, in one ValueError that names every
    problem: a family not in the list; flags that are not True or False; a mean that is not a
    finite number, moments or bounds that are not finite numbers ≥ 0 (None: unknown); a support
    that is not (low, high) with low ≤ high; and numbers that contradict each other: a non-zero
    mean with ``zero_mean``, (E δ)² > E δ², (E δ²)² > E δ⁴, a mean, moment or support beyond a
    bound that holds for every input (``relative_bound`` 0: abs(E δ) ≤ bound, E δ² ≤ bound²,
    E δ⁴ ≤ bound⁴), a mean outside the support or E δ² above max(low², high²).

    What a law declares is checked against what the perturbation does by :func:`check`; the
    law of P(x) *given* x is :meth:`Perturbation.conditional_law`.
    """

    family: str
    additive: bool
    zero_mean: bool
    mean: float | None = None
    second_moment: float | None = None
    fourth_moment: float | None = None
    per_sample: bool = True
    bound: float | None = None
    relative_bound: float | None = 0.0
    support: tuple | None = None

    def __post_init__(self):
        problems = []

        def number(name, nonneg):
            v = getattr(self, name)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                problems.append(f"{name} must be a finite number{' >= 0' if nonneg else ''} or None (unknown), got {v!r}")
                return None
            if nonneg and v < 0:
                problems.append(f"{name} must be >= 0 (or None: unknown), got {v!r}")
                return None
            object.__setattr__(self, name, float(v))
            return float(v)

        if not isinstance(self.family, str) or self.family not in LAW_FAMILIES:
            problems.append(f"family must be one of {list(LAW_FAMILIES)}, got {self.family!r}")
        for name in ("additive", "zero_mean", "per_sample"):
            v = getattr(self, name)
            if isinstance(v, np.bool_):
                object.__setattr__(self, name, bool(v))
            elif not isinstance(v, bool):
                problems.append(f"{name} must be True or False, got {v!r}")
        mean = number("mean", False)
        m2, m4 = number("second_moment", True), number("fourth_moment", True)
        bound, rel = number("bound", True), number("relative_bound", True)
        support = self.support
        if support is not None:
            ok = isinstance(support, (tuple, list)) and len(support) == 2 and all(
                not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v)
                for v in support)
            if not ok or support[0] > support[1]:
                problems.append(f"support must be (low, high) with finite low <= high, or None, got {support!r}")
                support = None
            else:
                support = (float(support[0]), float(support[1]))
                object.__setattr__(self, "support", support)

        def above(a, b):  # a > b beyond rounding
            return a > b + _LAW_RTOL * (abs(a) + abs(b)) + 1e-300

        if self.zero_mean is True and mean is not None and mean != 0.0:
            problems.append(f"zero_mean is True but mean is {mean!r}")
        if mean is not None and m2 is not None and above(mean * mean, m2):
            problems.append(f"mean² = {mean * mean:g} exceeds second_moment = {m2:g} (E δ² >= (E δ)²)")
        if m2 is not None and m4 is not None and above(m2 * m2, m4):
            problems.append(f"second_moment² = {m2 * m2:g} exceeds fourth_moment = {m4:g} (E δ⁴ >= (E δ²)²)")
        if bound is not None and rel == 0.0:  # a bound that holds whatever the input
            if mean is not None and above(abs(mean), bound):
                problems.append(f"|mean| = {abs(mean):g} exceeds bound = {bound:g}")
            if m2 is not None and above(m2, bound * bound):
                problems.append(f"second_moment = {m2:g} exceeds bound² = {bound * bound:g}")
            if m4 is not None and above(m4, bound**4):
                problems.append(f"fourth_moment = {m4:g} exceeds bound⁴ = {bound**4:g}")
            if support is not None and above(max(abs(support[0]), abs(support[1])), bound):
                problems.append(f"support {support} reaches beyond bound = {bound:g}")
        if support is not None:
            lo, hi = support
            if mean is not None and (above(lo, mean) or above(mean, hi)):
                problems.append(f"mean = {mean:g} lies outside support {support}")
            if m2 is not None and above(m2, max(lo * lo, hi * hi)):
                problems.append(f"second_moment = {m2:g} exceeds max(low², high²) = {max(lo * lo, hi * hi):g} of support {support}")
        if problems:
            raise ValueError("Law: " + "; ".join(problems))

    @property
    def variance(self) -> float | None:
        if self.mean is None or self.second_moment is None:
            return None
        return self.second_moment - self.mean**2


_NO_LAST = None


@dataclass(frozen=True)
class Schedule:
    """The steps t ≥ 0 at which a perturbation acts.

    Regular: t = first, first + interval, ... up to ``last`` (inclusive; None:
    forever).  Irregular: the explicit set ``steps`` (first/interval/last then
    describe its smallest element, its gap if evenly spaced, and its largest).
    """

    first: int = 0
    interval: int = 1
    last: int | None = _NO_LAST
    steps: frozenset | None = None

    @classmethod
    def always(cls) -> "Schedule":
        return cls()

    @classmethod
    def never(cls) -> "Schedule":
        return cls(steps=frozenset())

    @classmethod
    def of_steps(cls, steps) -> "Schedule":
        """The schedule acting exactly at ``steps``; regular when they are evenly spaced."""
        s = sorted(set(int(t) for t in steps))
        if not s:
            return cls.never()
        gaps = set(np.diff(s).tolist())
        if len(gaps) <= 1:
            return cls(first=s[0], interval=gaps.pop() if gaps else 1, last=s[-1])
        return cls(first=s[0], interval=1, last=s[-1], steps=frozenset(s))

    @property
    def regular(self) -> bool:
        """Describable by first / interval / last alone (the compiled engine needs this)."""
        return self.steps is None

    @property
    def empty(self) -> bool:
        return self.steps is not None and not self.steps

    def active(self, t: int) -> bool:
        if self.steps is not None:
            return t in self.steps
        return t >= self.first and (self.last is None or t <= self.last) and (t - self.first) % self.interval == 0

    def steps_before(self, T: int) -> np.ndarray:
        """The steps t < T at which it acts, sorted."""
        if self.steps is not None:
            return np.array(sorted(t for t in self.steps if t < T), dtype=np.int64)
        end = T if self.last is None else min(T, self.last + 1)
        return np.arange(self.first, max(end, self.first), self.interval, dtype=np.int64)

    def count(self, T: int) -> int:
        """How many times it acts in the steps 0..T−1."""
        if self.steps is not None:
            return sum(1 for t in self.steps if t < T)
        end = T if self.last is None else min(T, self.last + 1)
        return max(0, -(-(end - self.first) // self.interval))

    def __and__(self, other: "Schedule") -> "Schedule":
        """The steps at which both schedules act."""
        if self.steps is not None or other.steps is not None:
            explicit, rest = (self, other) if self.steps is not None else (other, self)
            return Schedule.of_steps(t for t in explicit.steps if rest.active(t))
        lcm = self.interval * other.interval // math.gcd(self.interval, other.interval)
        start = max(self.first, other.first)
        last = min((s.last for s in (self, other) if s.last is not None), default=None)
        for t in range(start, start + lcm):
            if self.active(t) and other.active(t):
                if last is not None and t > last:
                    break
                return Schedule(first=t, interval=lcm, last=last)
        return Schedule.never()


class _CompiledOpMeta(type):
    """``CompiledOp(kind, params, per_sample)``, the positional form, builds the named form of ``kind``."""

    def __call__(cls, *args, **kwargs):
        if cls is CompiledOp:
            return CompiledOp.of(*args, **kwargs)
        return super().__call__(*args, **kwargs)


class CompiledOp(metaclass=_CompiledOpMeta):
    """What the compiled engine computes for a perturbation when it acts: one of the named forms

    * :class:`UniformOp` ``(low, high, per_sample)``: add U(low, high);
    * :class:`RoundOp` ``(man_bits, emin, max_finite, has_inf, stochastic)``: round to a format of
      :data:`fbsgd.lowprec.FORMATS`, to nearest or stochastically;
    * :class:`BitFlipOp` ``(rate, lo_bit, n_bits)``: flip bits of the entries' float32 patterns;
    * :class:`ElementOp` ``(fn, numbers, per_sample)``: a researcher's own numba function applied to
      every entry, ``y = fn(x, u, numbers)``;
    * :class:`BlockOp` ``(fn, block, numbers, per_sample)``: a researcher's own numba function applied
      to every block of ``block`` consecutive entries, ``fn(x, u, numbers, out)``.

    Each checks its fields when it is built and refuses an invalid one with a ValueError naming the
    field and what is allowed, so an invalid number never reaches a kernel.  A new kind describes
    itself with one of them in its ``compiled()``; nothing else in the package changes.

    Every form has ``kind`` ("uniform", "round", "bitflip", "element", "block"), ``params`` (its numbers as a
    tuple, in the order above) and ``per_sample`` (one draw per entry; False: one draw shared by the
    batch).  ``CompiledOp(kind, params, per_sample)`` builds the named form from those (the
    positional form of earlier versions), with the same checks.
    """

    kind = ""
    FIELDS: tuple = ()  # the names of the numbers, in the order of ``params``
    per_sample = True

    @property
    def params(self) -> tuple:
        return tuple(getattr(self, n) for n in self.FIELDS)

    @staticmethod
    def of(kind: str, params=(), per_sample: bool = True) -> "CompiledOp":
        """The named form of ``kind`` with the numbers ``params`` (in the order of its ``FIELDS``)."""
        forms = {"uniform": UniformOp, "round": RoundOp, "bitflip": BitFlipOp}
        if not isinstance(kind, str) or kind not in forms:
            raise ValueError(f"CompiledOp: kind must be one of {list(forms)} (a researcher's own element operation: "
                             f"ElementOp(fn, numbers)), got {kind!r}")
        cls = forms[kind]
        try:
            params = tuple(params)
        except TypeError:
            raise ValueError(f"CompiledOp: params of a {kind!r} operation must be the numbers {cls.FIELDS}, "
                             f"got {params!r}") from None
        if kind == "round" and len(params) == len(cls.FIELDS) - 1:
            params += (False,)  # (man_bits, emin, max_finite, has_inf): round to nearest
        if len(params) != len(cls.FIELDS):
            raise ValueError(f"CompiledOp: params of a {kind!r} operation must be the {len(cls.FIELDS)} numbers "
                             f"{cls.FIELDS}, got {params!r}")
        if cls is UniformOp:
            return UniformOp(*params, per_sample=per_sample)
        if per_sample is not True and per_sample != 1:
            raise ValueError(f"CompiledOp: per_sample of a {kind!r} operation must be True (it acts on every entry "
                             f"with its own draw), got {per_sample!r}")
        return cls(*params)


def _op_flag(owner: str, name: str, v) -> bool:
    if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)):
        return bool(v)
    raise ValueError(f"{owner}: field {name} must be True or False, got {v!r}")


def _op_number(owner: str, name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise ValueError(f"{owner}: field {name} must be a finite number, got {v!r}")
    return float(v)


def _op_int(owner: str, name: str, v, allowed: str) -> int:
    integral = isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and math.isfinite(v)
                                                     and float(v).is_integer())
    if isinstance(v, (bool, np.bool_)) or not integral:
        raise ValueError(f"{owner}: field {name} must be an integer ({allowed}), got {v!r}")
    return int(v)


@dataclass(frozen=True)
class UniformOp(CompiledOp):
    """Add U(low, high) to every entry: one draw per entry (``per_sample``) or one shared by the batch.
    ``low`` and ``high``: finite, low <= high."""

    low: float
    high: float
    per_sample: bool = True
    kind = "uniform"
    FIELDS = ("low", "high")

    def __post_init__(self):
        lo, hi = _op_number("UniformOp", "low", self.low), _op_number("UniformOp", "high", self.high)
        if lo > hi:
            raise ValueError(f"UniformOp: field high must be >= low (finite numbers), got low={lo!r}, high={hi!r}")
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)
        object.__setattr__(self, "per_sample", _op_flag("UniformOp", "per_sample", self.per_sample))


@dataclass(frozen=True)
class RoundOp(CompiledOp):
    """Round every entry to the format ``(man_bits, emin, max_finite, has_inf)`` — one of
    :data:`fbsgd.lowprec.FORMATS` (:func:`fbsgd.lowprec.round_entries`) — to nearest, ties to even, or
    ``stochastic``ally with the entry's own draw.  ``RoundOp.to("bfloat16", "stochastic")`` builds it
    from a format's name."""

    man_bits: int
    emin: int
    max_finite: float
    has_inf: bool
    stochastic: bool = False
    kind = "round"
    FIELDS = ("man_bits", "emin", "max_finite", "has_inf", "stochastic")

    def __post_init__(self):
        known = {f.args: name for name, f in lowprec.FORMATS.items()}
        allowed = "; ".join(f"{name}: {f.args}" for name, f in lowprec.FORMATS.items())
        man_bits = _op_int("RoundOp", "man_bits", self.man_bits, "the mantissa bits of a known format")
        emin = _op_int("RoundOp", "emin", self.emin, "the smallest normal exponent of a known format")
        max_finite = _op_number("RoundOp", "max_finite", self.max_finite)
        has_inf = _op_flag("RoundOp", "has_inf", self.has_inf)
        for name, value, values in (("man_bits", man_bits, {a[0] for a in known}), ("emin", emin, {a[1] for a in known}),
                                    ("max_finite", max_finite, {a[2] for a in known})):
            if value not in values:
                raise ValueError(f"RoundOp: field {name} = {value!r} is not that of a known format; allowed "
                                 f"(man_bits, emin, max_finite, has_inf) are those of fbsgd.lowprec.FORMATS: {allowed}")
        if (man_bits, emin, max_finite, has_inf) not in known:
            raise ValueError(f"RoundOp: fields (man_bits, emin, max_finite, has_inf) = {(man_bits, emin, max_finite, has_inf)} "
                             f"are not those of one format; allowed: {allowed}")
        object.__setattr__(self, "man_bits", man_bits)
        object.__setattr__(self, "emin", emin)
        object.__setattr__(self, "max_finite", max_finite)
        object.__setattr__(self, "has_inf", has_inf)
        object.__setattr__(self, "stochastic", _op_flag("RoundOp", "stochastic", self.stochastic))

    @classmethod
    def to(cls, format: str, mode: str = "nearest") -> "RoundOp":
        """The rounding to the format called ``format`` (a name of :data:`fbsgd.lowprec.FORMATS`), ``mode``
        "nearest" or "stochastic"."""
        f = lowprec.format_of(format)
        _choice("RoundOp", "mode", mode, _ROUND_MODES)
        return cls(*f.args, stochastic=mode == "stochastic")

    @property
    def format(self) -> str:
        """The name of the format."""
        return next(name for name, f in lowprec.FORMATS.items()
                    if f.args == (self.man_bits, self.emin, self.max_finite, self.has_inf))


@dataclass(frozen=True)
class BitFlipOp(CompiledOp):
    """Flip each of the bits ``lo_bit .. lo_bit + n_bits − 1`` of every entry's float32 pattern independently
    with probability ``rate`` (:func:`fbsgd.lowprec.flip_bits_inplace`).  ``rate`` in [0, 1];
    0 <= lo_bit, 1 <= n_bits, lo_bit + n_bits <= 32.  The bits are those of the float32 pattern in a
    float64 pass too (an entry hit by a flip becomes that float32 value), so the same limits apply."""

    rate: float
    lo_bit: int
    n_bits: int
    kind = "bitflip"
    FIELDS = ("rate", "lo_bit", "n_bits")

    def __post_init__(self):
        rate = _op_number("BitFlipOp", "rate", self.rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"BitFlipOp: field rate must be a probability in [0, 1], got {self.rate!r}")
        lo = _op_int("BitFlipOp", "lo_bit", self.lo_bit, "0 <= lo_bit <= 31, a bit of the float32 pattern")
        n = _op_int("BitFlipOp", "n_bits", self.n_bits, "1 <= n_bits <= 32 - lo_bit")
        if not 0 <= lo <= 31:
            raise ValueError(f"BitFlipOp: field lo_bit must be in 0..31 (the bits of the float32 pattern), got {lo}")
        if not 1 <= n <= 32 - lo:
            raise ValueError(f"BitFlipOp: field n_bits must be in 1..{32 - lo} so that the bits lo_bit..lo_bit+n_bits-1 "
                             f"lie in 0..31 (the float32 pattern), got bits {lo}..{lo + n - 1}")
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "lo_bit", lo)
        object.__setattr__(self, "n_bits", n)


def _check_keep_k(op) -> None:
    """The fields of TopKOp / RandKOp: k an integer >= 1, scope one of the scopes."""
    name = type(op).__name__
    k = _op_int(name, "k", op.k, ">= 1, the entries kept per row")
    if k < 1:
        raise ValueError(f"{name}: field k must be an integer >= 1 (the entries kept per row), got {op.k!r}")
    object.__setattr__(op, "k", k)
    if op.scope not in _SCOPES:
        raise ValueError(f"{name}: field scope must be one of {list(_SCOPES)}, got {op.scope!r}")


@dataclass(frozen=True)
class TopKOp(CompiledOp):
    """Keep the ``k`` entries of largest magnitude of every row (``scope`` "per_sample": each sample's
    features; "batch": each feature over the batch), zero the rest; ties to the lower index, NaN
    last (:class:`TopK`).  ``k``: an integer >= 1; a row of at most k entries is kept whole."""

    k: int
    scope: str = "per_sample"
    kind = "topk"
    FIELDS = ("k",)

    def __post_init__(self):
        _check_keep_k(self)


@dataclass(frozen=True)
class RandKOp(CompiledOp):
    """Keep ``k`` entries of every row (``scope`` as :class:`TopKOp`), those with the k smallest draws of
    the stream (``rng.uniform(key, step, rows.shape)``, ties to the lower index), scaled by n/k, n the
    row's length; zero the rest (:class:`RandK`).  ``k``: an integer >= 1; a row of at most k entries
    is kept whole, unscaled."""

    k: int
    scope: str = "per_sample"
    kind = "randk"
    FIELDS = ("k",)

    def __post_init__(self):
        _check_keep_k(self)


def _memoryless(owner: str, inner) -> None:
    if not isinstance(inner, CompiledOp) or isinstance(inner, (ErrorFeedbackOp, DeltaOp)):
        raise ValueError(f"{owner}: field inner must be the compiled form of a memoryless compressor (UniformOp, "
                         f"RoundOp, BitFlipOp, TopKOp, RandKOp, ElementOp, BlockOp), got {inner!r}")


def _memory_form(cls, corrector) -> "CompiledOp":
    """``cls(compressor.compiled())`` for a corrector with memory, or NotImplementedError (the reference
    path) when its compressor has no memoryless compiled form or a schedule of its own."""
    c = corrector.compressor
    if c.schedule != Schedule.always():
        raise NotImplementedError(
            f"the compiled engine runs {type(corrector).__name__} around a compressor that acts at every step; "
            f"{c!r} has a schedule of its own (put the schedule outside instead: every(k, "
            f"{type(corrector).__name__}(C)))")
    inner = c.compiled()
    if isinstance(inner, (ErrorFeedbackOp, DeltaOp)):
        raise NotImplementedError(f"the compiled engine runs {type(corrector).__name__} around a memoryless "
                                  f"compressor; {c!r} keeps a memory of its own")
    return cls(inner)


@dataclass(frozen=True)
class ErrorFeedbackOp(CompiledOp):
    """Error feedback around the memoryless compiled form ``inner`` (:class:`ErrorFeedback`): send
    s = C(x + e), keep e ← x + e − s; e (float64, the message's shape) is zero at the start and kept
    between the steps where it acts; C draws from ``rng.fold_key(key, 0)``."""

    inner: CompiledOp
    kind = "feedback"
    FIELDS = ()

    def __post_init__(self):
        _memoryless("ErrorFeedbackOp", self.inner)

    @classmethod
    def around(cls, corrector) -> "ErrorFeedbackOp":
        """The form of an :class:`ErrorFeedback`, or NotImplementedError (its compressor cannot be compiled)."""
        return _memory_form(cls, corrector)


@dataclass(frozen=True)
class DeltaOp(CompiledOp):
    """Delta compression around the memoryless compiled form ``inner``
    (:class:`fbsgd.correctors.DeltaCompression`): r ← r + C(x − r), output r; r (float64, the
    message's shape) is zero at the start and kept between the steps where it acts; C draws from
    ``rng.fold_key(key, 0)``."""

    inner: CompiledOp
    kind = "delta"
    FIELDS = ()

    def __post_init__(self):
        _memoryless("DeltaOp", self.inner)

    @classmethod
    def around(cls, corrector) -> "DeltaOp":
        """The form of a :class:`fbsgd.correctors.DeltaCompression`, or NotImplementedError."""
        return _memory_form(cls, corrector)


_ELEMENT_CHECKED: dict = {}  # fn -> None (it compiles for the engine's argument types) or the reason it does not


@dataclass(frozen=True)
class ElementOp(CompiledOp):
    """A researcher's own element operation: every entry x of the message becomes ``fn(x, u, numbers)``.

    ``fn``: a numba function (``@numba.njit``) of x (the entry, float64), u (a uniform draw in [0, 1)
    from the perturbation's stream for this entry: :func:`fbsgd.rng.uniform01_scalar` at the step, with
    the entry's index, or index 0 for every entry when ``per_sample`` is False) and ``numbers`` (a
    float64 array of the kind's ``numbers``), returning the new value (float64; in a float32 pass it
    is stored as float32).  The compiled engine inlines ``fn`` into its kernel; :meth:`apply` applies
    it the same way in numpy code, so the kind's own ``apply`` can be ``self.compiled().apply(x, key,
    step)`` and the reference path computes what the kernel computes.

    A kind returning an ElementOp from ``compiled()`` runs in the compiled engine with no other
    edit.  Its identity in the sweep cache is the kind's canonical form
    (:func:`canonical`: its fields and the code of its class and of the module functions it calls
    by name, ``fn`` among them), so editing ``fn`` gives new keys.
    """

    fn: object
    numbers: tuple = ()
    per_sample: bool = True
    kind = "element"
    FIELDS = ("numbers",)

    def __post_init__(self):
        fn = self.fn
        if not (callable(fn) and hasattr(fn, "py_func") and type(fn).__module__.split(".")[0] == "numba"):
            raise ValueError(f"ElementOp: field fn must be a numba function (decorated with @numba.njit) "
                             f"fn(x, u, numbers) -> y, got {fn!r}")
        try:
            numbers = tuple(self.numbers)
        except TypeError:
            raise ValueError(f"ElementOp: field numbers must be a tuple of finite numbers, got {self.numbers!r}") from None
        object.__setattr__(self, "numbers", tuple(_op_number("ElementOp", f"numbers[{i}]", v) for i, v in enumerate(numbers)))
        object.__setattr__(self, "per_sample", _op_flag("ElementOp", "per_sample", self.per_sample))
        if fn not in _ELEMENT_CHECKED:  # compile it once for the engine's argument types, and say why not
            try:
                y = fn(0.5, 0.5, np.zeros(max(1, len(numbers))))
                _ELEMENT_CHECKED[fn] = None if isinstance(y, (float, np.floating, int, np.integer)) and not isinstance(
                    y, bool) else f"it returns {type(y).__name__}, not a number"
            except Exception as exc:  # noqa: BLE001 - numba's typing errors are many classes
                _ELEMENT_CHECKED[fn] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
        if _ELEMENT_CHECKED[fn] is not None:
            raise ValueError(f"ElementOp: field fn ({getattr(fn, '__name__', fn)!r}) must compile as "
                             f"fn(x: float64, u: float64, numbers: float64 array) -> float64; {_ELEMENT_CHECKED[fn]}")

    @property
    def params(self) -> tuple:
        return self.numbers

    def apply(self, x, key: int, step: int) -> np.ndarray:
        """``fn`` applied to every entry of ``x`` (flattened in C order, entry i with draw i), as the
        compiled engine applies it: a new array of x's shape and float32/float64 dtype."""
        x = np.asarray(x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        src = np.ascontiguousarray(x).reshape(-1)
        out = np.empty_like(src)
        numbers = np.array(self.numbers if self.numbers else (0.0,), dtype=np.float64)
        lowprec.map_elements(self.fn, src, out, numbers, self.per_sample, np.uint64(int(key) % 2**64), int(step))
        return out.reshape(x.shape)


_BLOCK_CHECKED: dict = {}  # fn -> None (it compiles for the engine's argument types) or the reason it does not


@dataclass(frozen=True)
class BlockOp(CompiledOp):
    """A researcher's own block operation: the message, a (rows, width) array (samples × features; a
    one-dimensional message is one row), is cut into blocks of ``block`` entries, and each block
    becomes ``fn``'s output.  ``axis``: -1 cuts each row (a block never spans two samples; the last
    block of a row may be shorter), 0 each column (a block runs over consecutive samples of one
    feature), None (the default) the rows, except for a one-column message (the Section 7 chain),
    whose column is cut: its blocks run over consecutive samples.

    ``fn``: a numba function (``@numba.njit``) ``fn(x, u, numbers, out) -> None`` of one block: x
    (float64 array of its n <= block entries), u (float64 array of n uniform draws in [0, 1) from the
    perturbation's stream: :func:`fbsgd.rng.uniform01_scalar` at the step with the entry's flat index
    in the message, or index 0 for every entry when ``per_sample`` is False), ``numbers`` (a float64
    array of the kind's ``numbers``, [0.0] when there are none); it writes the block's new values into
    ``out`` (float64, length n; in a float32 pass they are stored as float32).  ``block``: an integer
    >= 1.  The compiled engines call ``fn`` on the blocks as :func:`fbsgd.lowprec.map_blocks` does, and
    :meth:`apply` is that function, so the kind's own ``apply`` can be ``self.compiled().apply(x, key,
    step)`` and the reference path computes what the kernels compute.

    A kind returning a BlockOp from ``compiled()`` runs in the compiled engine with no other edit; its
    identity in the sweep cache is its canonical form (:func:`canonical`), ``fn``'s code among it.
    """

    fn: object
    block: int
    numbers: tuple = ()
    per_sample: bool = True
    axis: int | None = None
    kind = "block"
    FIELDS = ("block", "numbers")
    MODES = {None: lowprec.BLOCK_AUTO, -1: lowprec.BLOCK_ROWS, 0: lowprec.BLOCK_COLUMNS}

    def __post_init__(self):
        fn = self.fn
        if not (callable(fn) and hasattr(fn, "py_func") and type(fn).__module__.split(".")[0] == "numba"):
            raise ValueError(f"BlockOp: field fn must be a numba function (decorated with @numba.njit) "
                             f"fn(x, u, numbers, out) -> None, got {fn!r}")
        block = _op_int("BlockOp", "block", self.block, ">= 1, the entries per block")
        if block < 1:
            raise ValueError(f"BlockOp: field block must be an integer >= 1 (the entries per block), got {self.block!r}")
        object.__setattr__(self, "block", block)
        try:
            numbers = tuple(self.numbers)
        except TypeError:
            raise ValueError(f"BlockOp: field numbers must be a tuple of finite numbers, got {self.numbers!r}") from None
        object.__setattr__(self, "numbers", tuple(_op_number("BlockOp", f"numbers[{i}]", v) for i, v in enumerate(numbers)))
        object.__setattr__(self, "per_sample", _op_flag("BlockOp", "per_sample", self.per_sample))
        if isinstance(self.axis, bool) or self.axis not in self.MODES:
            raise ValueError(f"BlockOp: field axis must be -1 (blocks along each row), 0 (down each column) or None "
                             f"(the rows; a one-column message: its column), got {self.axis!r}")
        if fn not in _BLOCK_CHECKED:  # compile it once for the engine's argument types, and say why not
            try:
                x = np.linspace(-1.0, 1.0, 3)
                y = fn(x, np.full(3, 0.5), np.zeros(max(1, len(numbers))), np.empty(3))
                _BLOCK_CHECKED[fn] = None if y is None else f"it returns {type(y).__name__}; it must write into out " \
                                                             "and return nothing"
            except Exception as exc:  # noqa: BLE001 - numba's typing errors are many classes
                _BLOCK_CHECKED[fn] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
        if _BLOCK_CHECKED[fn] is not None:
            raise ValueError(f"BlockOp: field fn ({getattr(fn, '__name__', fn)!r}) must compile as fn(x: float64 array, "
                             f"u: float64 array, numbers: float64 array, out: float64 array) -> None; {_BLOCK_CHECKED[fn]}")

    @property
    def params(self) -> tuple:
        return (self.block, *self.numbers)

    @property
    def mode(self) -> int:
        """How :func:`fbsgd.lowprec.map_blocks` cuts the message (``lowprec.BLOCK_AUTO``, ``BLOCK_ROWS``
        or ``BLOCK_COLUMNS``, from ``axis``)."""
        return self.MODES[self.axis]

    def apply(self, x, key: int, step: int) -> np.ndarray:
        """``fn`` applied to the blocks of ``x`` (a (rows, width) message: its last dimension is the width;
        one dimension: one row) as the compiled engines apply it: a new array of x's shape and
        float32/float64 dtype."""
        x = np.asarray(x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        src = np.ascontiguousarray(x).reshape(-1)
        out = np.empty_like(src)
        numbers = np.array(self.numbers if self.numbers else (0.0,), dtype=np.float64)
        width = x.shape[-1] if x.ndim >= 1 else 1
        rows = src.size // width if width else 0
        lowprec.map_blocks(self.fn, src, out, numbers, self.block, rows, width, self.mode, self.per_sample,
                           np.uint64(int(key) % 2**64), int(step))
        return out.reshape(x.shape)


class PerturbationState(NamedTuple):
    """A perturbation's whole state: its stream key, the step counter, and its memory (None if it has none)."""

    key: int
    step: int
    memory: object = None


class Perturbation:
    """Base class.  Subclasses implement ``apply(x, key, step)`` (no memory) or
    ``transform(x, key, step, memory) -> (out, memory)``, and describe themselves
    through ``law``, ``schedule`` and ``compiled``."""

    def init(self, seed: int) -> PerturbationState:
        """Fresh state; the stream key is a hash of ``seed`` (any int or key)."""
        return PerturbationState(rng.derive_key("fbsgd.perturbation", int(seed)), 0, self.init_memory())

    def init_memory(self):
        return None

    def __call__(self, x: np.ndarray, state: PerturbationState):
        if not isinstance(state, PerturbationState):
            raise TypeError(f"{self!r}: state must be the PerturbationState returned by init(seed), got {type(state).__name__}")
        out, memory = self.transform(x, state.key, state.step, state.memory)
        return out, PerturbationState(state.key, state.step + 1, memory)

    def transform(self, x, key: int, step: int, memory):
        return self.apply(x, key, step), memory

    def apply(self, x: np.ndarray, key: int, step: int) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement apply or transform")

    # -- the protocol ----------------------------------------------------------------------------
    @property
    def law(self) -> Law:
        raise NotImplementedError(f"{self!r} does not describe its law")

    @property
    def schedule(self) -> Schedule:
        return Schedule.always()

    def active(self, step: int) -> bool:
        """Whether the perturbation acts at ``step``."""
        return self.schedule.active(step)

    @property
    def label(self) -> str:
        """A short readable name for tables and legends."""
        return repr(self)

    def compiled(self) -> CompiledOp:
        raise NotImplementedError(
            f"the compiled engines cannot run {self!r}: it has no compiled() of its own. They run the built-in "
            "kinds (UniformNoise, Round, BitFlip, TopK, RandK, ErrorFeedback and DeltaCompression around a memoryless "
            "kind), optionally wrapped in Every, AtSteps or budget with evenly spaced steps, and any kind whose "
            "compiled() returns a compiled form: UniformOp, RoundOp, BitFlipOp, TopKOp, RandKOp, or a numba "
            "function of its own as ElementOp(fn, numbers) (y = fn(x, u, numbers) per entry) or "
            "BlockOp(fn, block, numbers) (fn(x, u, numbers, out) per block)"
        )

    def conditional_law(self, x, *, draws: int = laws.DEFAULT_DRAWS, seed: int = 0) -> laws.ConditionalLaw:
        """The law of each entry of P(x) given the input ``x``, at a step where the perturbation acts
        (a :class:`fbsgd.laws.ConditionalLaw`: ``mean()``, ``bias()``, ``second_moment()``, ``expect(fn)``, ...).

        This default estimates it by Monte Carlo (:func:`fbsgd.laws.monte_carlo`): ``draws`` calls of
        the kind's own ``transform`` with fresh keys derived from ``seed``, every moment with its
        standard error.  A kind whose law given x is known overrides it (the built-in kinds do, exactly
        where the support is finite and in closed form for additive noise; they ignore ``draws`` and
        ``seed``), e.g. a deterministic kind::

            def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
                return laws.point_law(x, self.apply(np.asarray(x, dtype=float), 0, 0))

        :func:`check` tells whether it agrees with ``apply``."""
        return laws.monte_carlo(self, x, draws=draws, seed=seed)


def _shape(x: np.ndarray, per_sample: bool):
    """Per sample: one draw per entry.  Shared: one draw per feature, reused by all samples."""
    return x.shape if per_sample else (1,) + x.shape[1:]


# ---------------------------------------------------------------------------
# additive kinds
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity(Perturbation):
    """No perturbation."""

    def apply(self, x, key, step):
        return x

    @property
    def law(self):
        return Law("identity", True, True, 0.0, 0.0, 0.0, bound=0.0, support=(0.0, 0.0))

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """One point: P(x) = x."""
        return laws.point_law(x, laws.as_input(x), how="identity")


@dataclass(frozen=True)
class UniformNoise(Perturbation):
    """δ ~ U(low, high), independent per entry (``per_sample``) or shared by the batch."""

    low: float
    high: float
    per_sample: bool = True

    def __post_init__(self):
        lo, hi = _finite("UniformNoise", "low", self.low), _finite("UniformNoise", "high", self.high)
        if hi < lo:
            raise ValueError(f"UniformNoise needs finite low <= high, got low={self.low}, high={self.high}")
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)

    @property
    def mean(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def label(self) -> str:
        """"uniform U(−0.632, 0.632)" (", shared" when one draw serves the batch)."""
        return f"uniform U({self.low:.3g}, {self.high:.3g})" + ("" if self.per_sample else ", shared")

    @property
    def second_moment(self) -> float:
        """E[δ²] of one entry."""
        return (self.low**2 + self.low * self.high + self.high**2) / 3.0

    @property
    def law(self):
        a, b = self.low, self.high
        m4 = a**4 if a == b else (b**5 - a**5) / (5 * (b - a))
        return Law("uniform", True, a == -b, self.mean, self.second_moment, m4, self.per_sample,
                   bound=max(abs(a), abs(b)), support=(a, b))

    def compiled(self):
        return UniformOp(self.low, self.high, self.per_sample)

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """x + U(low, high): moments in closed form (:class:`fbsgd.laws.UniformLaw`)."""
        return laws.UniformLaw(x, self.low, self.high, per_sample=self.per_sample)

    def apply(self, x, key, step):
        return x + rng.uniform(key, step, _shape(x, self.per_sample), self.low, self.high)


def zero_mean_uniform(sigma: float, dim: int, per_sample: bool = True) -> UniformNoise:
    """U(-σ/√d, σ/√d): the zero-mean perturbation of Section 7.2.1."""
    sigma = _finite("zero_mean_uniform", "sigma", sigma)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    a = sigma / math.sqrt(_integer("zero_mean_uniform", "dim", dim, min=1))
    return UniformNoise(-a, a, per_sample)


def nonzero_mean_uniform(sigma: float, dim: int, per_sample: bool = True) -> UniformNoise:
    """U(0, σ/√d): the biased perturbation of Section 7.2.2 (mean σ/(2√d))."""
    sigma = _finite("nonzero_mean_uniform", "sigma", sigma)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return UniformNoise(0.0, sigma / math.sqrt(_integer("nonzero_mean_uniform", "dim", dim, min=1)), per_sample)


@dataclass(frozen=True)
class GaussianNoise(Perturbation):
    """δ ~ N(mean, std²), independent per entry or shared by the batch."""

    std: float
    mean: float = 0.0
    per_sample: bool = True

    def __post_init__(self):
        object.__setattr__(self, "std", _finite("GaussianNoise", "std", self.std, min=0.0))
        object.__setattr__(self, "mean", _finite("GaussianNoise", "mean", self.mean))

    @property
    def law(self):
        m, s = self.mean, self.std
        return Law("gaussian", True, m == 0.0, m, m**2 + s**2, m**4 + 6 * m**2 * s**2 + 3 * s**4, self.per_sample,
                   bound=abs(m) if s == 0 else None)

    def apply(self, x, key, step):
        return x + self.mean + rng.normal(key, step, _shape(x, self.per_sample), self.std)

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """x + N(mean, std²): moments in closed form (:class:`fbsgd.laws.GaussianLaw`)."""
        return laws.GaussianLaw(x, self.mean, self.std, per_sample=self.per_sample)


@dataclass(frozen=True)
class TwoPointNoise(Perturbation):
    """δ = ±a with equal probability (the symmetric two-point law of Appendix A.1)."""

    a: float
    per_sample: bool = True

    def __post_init__(self):
        object.__setattr__(self, "a", _finite("TwoPointNoise", "a", self.a, min=0.0))

    @property
    def law(self):
        return Law("two_point", True, True, 0.0, self.a**2, self.a**4, self.per_sample, bound=self.a)

    def apply(self, x, key, step):
        u = rng.uniform(key, step, _shape(x, self.per_sample))
        return x + np.where(u < 0.5, -self.a, self.a)

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """Two points x − a and x + a, each with probability 1/2."""
        x = laws.as_input(x)
        return laws.FiniteLaw(x, np.stack([x - self.a, x + self.a], axis=-1), 0.5, how=f"two points ±{self.a:g}",
                              independent=self.per_sample)


@dataclass(frozen=True)
class Constant(Perturbation):
    """δ = value at every step (Appendix A.2 uses a fixed scalar δ); a scalar or a vector."""

    value: object

    def __post_init__(self):
        v = np.asarray(self.value, dtype=float) if not isinstance(self.value, str) else None
        if v is None or v.ndim > 1 or v.size == 0 or not np.all(np.isfinite(v)):
            raise ValueError(f"Constant: value must be a finite number or a 1-D array of finite numbers, got {self.value!r}")
        if v.ndim == 0:
            object.__setattr__(self, "value", float(v))

    @property
    def law(self):
        v = np.asarray(self.value, dtype=float)
        if v.ndim == 0:
            m = float(v)
            # per_sample: a constant is trivially an independent (zero-variance) draw per entry
            return Law("constant", True, m == 0.0, m, m * m, m**4, True, bound=abs(m), support=(m, m))
        return Law("constant", True, bool(np.all(v == 0)), None, None, None, True, bound=float(np.abs(v).max()))

    def apply(self, x, key, step):
        return x + self.value

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """One point: P(x) = x + value (a vector value is added along the last axis, as ``apply`` does)."""
        x = laws.as_input(x)
        return laws.point_law(x, x + self.value, how="constant", elementwise=np.ndim(self.value) == 0)


# ---------------------------------------------------------------------------
# real mechanisms: low precision and faults
# ---------------------------------------------------------------------------

_ROUND_MODES = ("nearest", "stochastic")


@dataclass(frozen=True)
class Round(Perturbation):
    """Round every entry to a low-precision float format and back: P(x) = fl(x).

    ``format``: "bfloat16", "float16", "float8_e4m3fn" or "float8_e5m2" (each
    with its own subnormals and overflow behaviour, :mod:`fbsgd.lowprec`).
    ``mode``: "nearest" (ties to even; deterministic given x, so E[δ | x] ≠ 0)
    or "stochastic" (rounds up with probability equal to the distance to the
    lower neighbour over the gap: E[δ | x] = 0), drawing from its own stream.
    In the normal range ``|δ| ≤ u|x|`` (nearest, u = 2^-(p+1)) or ``2u|x|`` (stochastic).
    """

    format: str
    mode: str = "nearest"

    def __post_init__(self):
        lowprec.format_of(self.format)
        _choice("Round", "mode", self.mode, _ROUND_MODES)

    @property
    def _fmt(self):
        return lowprec.format_of(self.format)

    @property
    def law(self):
        f = self._fmt
        scale = 1.0 if self.mode == "nearest" else 2.0
        return Law("input_dependent", False, self.mode == "stochastic", per_sample=True,
                   bound=scale * 0.5 * f.smallest_subnormal, relative_bound=scale * f.unit_roundoff)

    @property
    def label(self):
        return f"{self.format} {self.mode}"

    def compiled(self):
        return RoundOp.to(self.format, self.mode)

    def apply(self, x, key, step):
        return lowprec.round_array(np.asarray(x), self.format, self.mode, key, step)

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """Exact.  Nearest: one point, fl(x).  Stochastic: the two neighbours lo, hi of x in the format
        (:func:`fbsgd.laws.round_neighbours`), hi with probability (abs(x) − abs(lo))/(abs(hi) − abs(lo)); inputs
        above the largest finite value are rounded to nearest (one point).  (The stream's draws lie on
        the grid k·2⁻⁵³, so the realised probability of hi exceeds this by less than 2⁻⁵³.)"""
        x = laws.as_input(x)
        if self.mode == "nearest":
            return laws.point_law(x, lowprec.round_array(x, self.format, "nearest"), how=f"{self.format} nearest, one point")
        lo, hi, p = laws.round_neighbours(x, self.format)
        return laws.FiniteLaw(x, np.stack([lo, hi], axis=-1), np.stack([1.0 - p, p], axis=-1),
                              how=f"{self.format} stochastic, two points")


@dataclass(frozen=True)
class BitFlip(Perturbation):
    """Flip each bit of the float32 pattern of each entry independently with probability ``rate``.

    ``field``: "any" (all 32 bits), "sign", "exponent" or "mantissa".  The flip
    pattern is drawn from the perturbation's counter-based stream (geometric
    skipping, :func:`fbsgd.lowprec.flip_bits`): reproducible and batch-invariant.
    A flip can make an entry inf or NaN; that is a result, not an error.  In a
    float64 pass an entry hit by a flip becomes its float32 value with the bit
    flipped; entries not hit are left exactly as they were.
    """

    rate: float
    field: str = "any"

    def __post_init__(self):
        r = _finite("BitFlip", "rate", self.rate, min=0.0)
        if r > 1:
            raise ValueError(f"BitFlip: rate must be in [0, 1], got {self.rate!r}")
        object.__setattr__(self, "rate", r)
        _choice("BitFlip", "field", self.field, tuple(lowprec.FIELDS))

    @property
    def law(self):
        return Law("input_dependent", self.rate == 0.0, self.rate == 0.0, per_sample=True,
                   bound=0.0 if self.rate == 0.0 else None)

    @property
    def label(self):
        return f"bit flip {self.field} {self.rate:g}"

    def compiled(self):
        lo, n = lowprec.FIELDS[self.field]
        return BitFlipOp(self.rate, lo, n)

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0, max_bits: int = 8):
        """Finite support.  A field of at most ``max_bits`` bits (sign, exponent): every one of its
        2^n flip patterns with probability r^k (1 − r)^(n−k), exact.  A wider field (mantissa, any):
        to first order in the rate r — at most one flip per entry: each single flip with probability
        r(1 − r)^(n−1), no flip with the rest (the mass of two or more flips, C(n, 2)r² + O(r³), is
        counted as no flip and given as ``neglected_mass``; ``exact`` is False).  An entry that no flip
        hits keeps its value x; one that is hit becomes the float32 value of x with those bits flipped."""
        x = laws.as_input(x)
        lo_bit, n = lowprec.FIELDS[self.field]
        r = self.rate
        x32 = x.astype(np.float32)
        bits = x32.view(np.uint32)

        def flipped(mask):
            with np.errstate(invalid="ignore"):  # a flip can make a signalling NaN; the cast quiets it, as apply's
                out = (bits ^ np.uint32(mask)).view(np.float32).astype(np.float64)
            return np.where(mask == 0, x, out)

        if r == 0.0 or r == 1.0:
            mask = 0 if r == 0.0 else ((1 << n) - 1) << lo_bit
            return laws.point_law(x, flipped(mask), how=f"bit flip {self.field} rate {r:g}, one point")
        if n <= max_bits:
            masks = np.arange(2**n, dtype=np.int64)
            k = np.array([bin(int(m)).count("1") for m in masks])
            probs = r**k * (1.0 - r) ** (n - k)
            pts = np.stack([flipped(int(m) << lo_bit) for m in masks], axis=-1)
            return laws.FiniteLaw(x, pts, probs / probs.sum(), how=f"bit flip {self.field} rate {r:g}, all {2**n} patterns")
        one = r * (1.0 - r) ** (n - 1)
        pts = np.stack([x] + [flipped(1 << (lo_bit + b)) for b in range(n)], axis=-1)
        probs = np.array([1.0 - n * one] + [one] * n)
        neglected = 1.0 - (1.0 - r) ** n - n * one
        return laws.FiniteLaw(x, pts, probs, how=f"bit flip {self.field} rate {r:g}, to first order in the rate",
                              exact=False, neglected_mass=neglected)

    def apply(self, x, key, step):
        x = np.asarray(x)
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        flipped = lowprec.flip_bits(x32, self.rate, self.field, key, step)
        if x.dtype == np.float32:
            return flipped
        # only the entries hit by a flip change (a float64 message is not rounded to float32 elsewhere)
        hit = flipped.view(np.uint32) != x32.view(np.uint32)
        out = np.array(x, dtype=float)
        out[hit] = flipped[hit]
        return out


# ---------------------------------------------------------------------------
# compressors
# ---------------------------------------------------------------------------

_SCOPES = ("per_sample", "batch")


def _along(x: np.ndarray, scope: str) -> np.ndarray:
    """The message as (groups, entries): rows are compressed independently."""
    x = np.atleast_2d(x)
    return x if scope == "per_sample" else x.T


@dataclass(frozen=True)
class TopK(Perturbation):
    """Top-K compressor: keep the k entries of largest magnitude, zero the rest.

    ``scope="per_sample"``: the k largest features of each sample;
    ``scope="batch"``: for each feature, the k largest samples (the logistic
    chain's messages are one number per sample, so only this scope acts there).
    Ties are broken towards the lower index, so the compressor is deterministic.
    """

    k: int
    scope: str = "per_sample"

    def __post_init__(self):
        object.__setattr__(self, "k", _integer("TopK", "k", self.k, min=1))
        _choice("TopK", "scope", self.scope, _SCOPES)

    @property
    def law(self):
        return Law("input_dependent", False, False, bound=0.0, relative_bound=1.0)

    @property
    def label(self):
        return f"Top-K k={self.k}"

    def compiled(self):
        return TopKOp(self.k, self.scope)

    def apply(self, x, key, step):
        m = _along(x, self.scope)
        if self.k >= m.shape[1]:
            return x
        order = np.argsort(-np.abs(m), axis=1, kind="stable")[:, : self.k]
        out = np.zeros_like(m)
        np.put_along_axis(out, order, np.take_along_axis(m, order, axis=1), axis=1)
        return out if self.scope == "per_sample" else out.T

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """One point, P(x) itself (Top-K is deterministic given x); not elementwise: an entry's
        fate depends on the others."""
        x = laws.as_input(x)
        return laws.point_law(x, np.reshape(self.apply(x, 0, 0), x.shape), how=f"Top-K k={self.k}, one point",
                              elementwise=False)


@dataclass(frozen=True)
class RandK(Perturbation):
    """Rand-K compressor: keep k entries chosen uniformly at random (without
    replacement), scaled by n/k, so that E[C(x)] = x (unbiased).

    The k kept entries of a row are those with the k smallest draws of the
    perturbation's stream; ``scope`` as for :class:`TopK`.
    """

    k: int
    scope: str = "per_sample"

    def __post_init__(self):
        object.__setattr__(self, "k", _integer("RandK", "k", self.k, min=1))
        _choice("RandK", "scope", self.scope, _SCOPES)

    @property
    def law(self):
        return Law("input_dependent", False, True, bound=0.0, relative_bound=None)

    @property
    def label(self):
        return f"Rand-K k={self.k}"

    def compiled(self):
        return RandKOp(self.k, self.scope)

    def apply(self, x, key, step):
        m = _along(x, self.scope)
        n = m.shape[1]
        if self.k >= n:
            return x
        u = rng.uniform(key, step, m.shape)
        keep = np.argsort(u, axis=1, kind="stable")[:, : self.k]
        out = np.zeros_like(m)
        np.put_along_axis(out, keep, np.take_along_axis(m, keep, axis=1) * (n / self.k), axis=1)
        return out if self.scope == "per_sample" else out.T

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """Per entry, over the random subset: x·n/k with probability k/n, 0 otherwise (n the length of
        the rows it compresses; k ≥ n: one point, x).  The marginal law of each entry: the entries of
        a row are not independent (exactly k are kept)."""
        x = laws.as_input(x)
        n = _along(x, self.scope).shape[1]
        if self.k >= n:
            return laws.point_law(x, x, how=f"Rand-K k={self.k} >= n={n}, one point")
        q = self.k / n
        return laws.FiniteLaw(x, np.stack([np.zeros_like(x), x * (n / self.k)], axis=-1), np.array([1.0 - q, q]),
                              how=f"Rand-K k={self.k} of n={n}, two points", elementwise=False, independent=False)


class CompressorWithMemory(Perturbation):
    """Base of the correctors that wrap a compressor C and keep an array of the message's
    shape as memory (zero at the start): error feedback here, delta compression in
    :mod:`fbsgd.correctors`.  Subclasses implement ``update(x, memory, compress)``."""

    compressor: Perturbation

    def __post_init__(self):
        if not isinstance(self.compressor, Perturbation):
            raise ValueError(f"{type(self).__name__}: compressor must be a Perturbation, got {self.compressor!r}")

    @property
    def law(self):
        return Law("input_dependent", False, False)

    @property
    def schedule(self):
        return self.compressor.schedule

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """The law of its output at a frozen input ``x`` once the memory has settled
        (:func:`fbsgd.laws.stationary`): the law that small-step SGD averages over, where the input
        barely moves while the memory reacts.  NaN moments when the memory blows up at ``x``."""
        return laws.stationary(self, x, draws=draws, seed=seed)

    def prepare(self, x, memory):
        """(x as float64, the memory: zeros of x's shape at the start)."""
        x = np.asarray(x, dtype=float)
        m = np.zeros_like(x) if memory is None else memory
        if m.shape != x.shape:
            raise ValueError(f"{type(self).__name__}: the message changed shape from {m.shape} to {x.shape}")
        return x, m

    def compress_fn(self, key, step):
        """C at this step, on the compressor's own sub-stream."""
        return lambda y: self.compressor.transform(y, rng.fold_key(key, 0), step, None)[0]

    def transform(self, x, key, step, memory):
        x, m = self.prepare(x, memory)
        return self.update(x, m, self.compress_fn(key, step))

    def update(self, x, memory, compress):
        raise NotImplementedError


@dataclass(frozen=True)
class ErrorFeedback(CompressorWithMemory):
    """Error feedback around a compressor C (EF-SGD): send s = C(x + e), keep
    e ← x + e − s.  The residual e is the perturbation's memory (zero at the
    start), so Σ_t s_t + e_T = Σ_t x_t exactly."""

    compressor: Perturbation

    def compiled(self):
        return ErrorFeedbackOp.around(self)

    def update(self, x, e, compress):
        target = x + e
        sent = compress(target)
        return sent, target - sent

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """The settled law at a frozen input (:func:`fbsgd.laws.stationary`), each sample shifted by the
        window's remainder (e_end − e_start)/draws: over the window the sent messages sum to
        draws·x − (e_end − e_start), so the shifted samples average to x exactly, as the sent messages
        of an unbounded window do while the residual stays bounded.  NaN when the residual blows up."""
        law = laws.stationary(self, x, draws=draws, seed=seed)
        shifted = laws.MonteCarloLaw(law.x, law.samples + law.memory_change[..., None],
                                     how=law.how.rsplit(",", 1)[0] + ", shifted by the window's remainder")
        return shifted.with_schedule(self.schedule)


# ---------------------------------------------------------------------------
# schedules and composition
# ---------------------------------------------------------------------------


class _Gated(Perturbation):
    """``inner`` acts when the gate's schedule says so; its memory is kept between active steps."""

    inner: Perturbation
    gate: Schedule

    @property
    def law(self):
        return self.inner.law

    @property
    def schedule(self):
        return self.gate & self.inner.schedule

    def init_memory(self):
        return self.inner.init_memory()

    def compiled(self):
        return self.inner.compiled()

    def conditional_law(self, x, *, draws=laws.DEFAULT_DRAWS, seed=0):
        """The inner kind's law given x, at the steps where it acts; the schedule rides along
        (``duty_cycle()`` of the result: the fraction of steps at which it acts)."""
        return self.inner.conditional_law(x, draws=draws, seed=seed).with_schedule(self.schedule)

    def transform(self, x, key, step, memory):
        if self.gate.active(step):
            return self.inner.transform(x, key, step, memory)
        return x, memory


@dataclass(frozen=True)
class Every(_Gated):
    """Intermittent perturbation: ``inner`` acts only when step % interval == offset."""

    interval: int
    inner: Perturbation
    offset: int = 0

    def __post_init__(self):
        if not isinstance(self.inner, Perturbation):
            raise ValueError(f"Every needs a Perturbation as inner, got {self.inner!r}")
        object.__setattr__(self, "interval", _integer("Every", "interval", self.interval, min=1))
        object.__setattr__(self, "offset", _integer("Every", "offset", self.offset, min=0))
        if not self.offset < self.interval:
            raise ValueError(f"Every needs 0 <= offset < interval, got offset={self.offset}")

    @property
    def gate(self):
        return Schedule(first=self.offset, interval=self.interval)


@dataclass(frozen=True)
class AtSteps(_Gated):
    """``inner`` acts exactly at the listed steps (a perturbation budget, Section 6.2)."""

    steps: frozenset
    inner: Perturbation

    def __init__(self, steps, inner):
        clean = []
        for s in steps:
            if isinstance(s, (int, np.integer, float, np.floating)) and not isinstance(s, bool) and s < 0:
                raise ValueError(f"AtSteps needs non-negative steps, got {s!r}")
            clean.append(_integer("AtSteps", "steps", s, min=0))
        if not isinstance(inner, Perturbation):
            raise ValueError(f"AtSteps needs a Perturbation as inner, got {inner!r}")
        object.__setattr__(self, "steps", frozenset(clean))
        object.__setattr__(self, "inner", inner)

    @property
    def gate(self):
        return Schedule.of_steps(self.steps)


@dataclass(frozen=True)
class Chain(Perturbation):
    """Apply perturbations in turn; each gets its own sub-stream of the key and keeps its own memory."""

    parts: tuple = field(default_factory=tuple)

    def init_memory(self):
        return tuple(p.init_memory() for p in self.parts)

    def transform(self, x, key, step, memory):
        memory = memory if memory is not None else self.init_memory()
        out = []
        for j, p in enumerate(self.parts):
            x, m = p.transform(x, rng.fold_key(key, j), step, memory[j])
            out.append(m)
        return x, tuple(out)

    @property
    def schedule(self):
        scheds = {p.schedule for p in self.parts}
        if len(scheds) == 1:
            return scheds.pop()
        return Schedule.of_steps(set().union(*(set(s.steps_before(2**20)) for s in scheds)))

    @property
    def law(self):
        """A sum of independent additive parts: means and variances add (fourth moment unknown)."""
        laws = [p.law for p in self.parts]
        if not laws:
            return Identity().law
        if len(laws) == 1:
            return laws[0]
        if not all(l.additive and l.mean is not None and l.second_moment is not None for l in laws):
            return Law("input_dependent", False, all(l.zero_mean for l in laws))
        mean = sum(l.mean for l in laws)
        var = sum(l.second_moment - l.mean**2 for l in laws)
        bounds = [l.bound for l in laws]
        return Law("sum", True, all(l.zero_mean for l in laws), mean, var + mean**2, None,
                   all(l.per_sample for l in laws), bound=None if None in bounds else sum(bounds))


def chain(*parts: Perturbation) -> Chain:
    return Chain(tuple(parts))


def every(interval: int, inner: Perturbation, offset: int = 0) -> Every:
    return Every(interval, inner, offset)


def at_steps(steps, inner: Perturbation) -> AtSteps:
    return AtSteps(steps, inner)


def budget(Q: int, T: int, inner: Perturbation, start: int = 0) -> AtSteps:
    """Exactly Q occurrences of ``inner``, evenly spaced over the iterations start..T−1
    (every ⌊(T − start)/Q⌋ iterations, the first at ``start``): a budget Q_δ or Q_ε of Section 6.2."""
    if isinstance(Q, bool) or not isinstance(Q, (int, np.integer)) or Q < 0:
        raise ValueError(f"budget needs an integer Q >= 0, got {Q}")
    if int(T) != T or T < 1 or not 0 <= start < T:
        raise ValueError(f"budget needs T >= 1 and 0 <= start < T, got T={T}, start={start}")
    if Q > T - start:
        raise ValueError(f"budget Q = {Q} exceeds the {T - start} iterations available")
    if Q == 0:
        return AtSteps([], inner)
    gap = (T - start) // Q
    return AtSteps(range(start, start + Q * gap, gap), inner)


# ---------------------------------------------------------------------------
# identity: one canonical text per perturbation (cache keys and random streams)
# ---------------------------------------------------------------------------

_CANONICAL_ALLOWED = ("numbers (not NaN), strings, bools, None, tuples, lists, sets, dicts, ranges, numeric numpy "
                      "arrays, perturbations and dataclass objects")


def nested_kinds(p) -> list:
    """``p`` and every perturbation it holds in its dataclass fields (error feedback's compressor, a
    schedule's inner kind, a chain's parts), depth first."""
    out, stack = [], [p]
    while stack:
        q = stack.pop()
        out.append(q)
        if _dc.is_dataclass(q):
            for f in _dc.fields(q):
                v = getattr(q, f.name)
                vs = v if isinstance(v, (tuple, list)) else (v,)
                stack.extend(x for x in vs if isinstance(x, Perturbation))
    return out


def canonical(p) -> str:
    """The canonical text of a perturbation: its identity in the sweep cache and its random streams.

    Equal perturbations get one text, in every process:

    * a dataclass is written ``Name(field=value, ...)`` with its compared fields in declaration
      order; any other object, ``Name(attr=value, ...)`` with its instance attributes
      (``__dict__`` and ``__slots__``, sorted by name; attributes filled by a
      ``functools.cached_property`` are left out), never a repr with a memory address;
    * sets and frozensets are written ``frozenset({...})``, sorted (numerically when all are numbers);
    * numbers: numpy scalars become Python numbers; in a field annotated ``float`` a number is
      written as that float (1 and 1.0 → ``1.0``), in a field annotated ``int`` or not annotated,
      an integral float as an int (1.0 → ``1``); -0.0 is 0.0; NaN is refused (NaN ≠ NaN);
      a field annotated ``bool`` holding 0 or 1 is written False / True;
    * nested perturbations (``Every``, ``AtSteps``, ``Chain``, correctors' compressors, ...),
      tuples, lists, dicts (sorted by key), ranges, strings, None and bools recursively; a numpy
      array as ``array(shape, dtype, values)``.

    For the built-in kinds with their sorted schedules this is exactly the dataclass repr (so
    the cache keys and streams of the book's runs are those of the repr they were built from).

    A researcher's own kind (a class defined outside fbsgd) is written ``Name<source:h>(...)``:
    ``h`` hashes the source of its class and of its bases outside fbsgd and the standard
    library (``inspect.getsource``), their compiled code (bytecode, constants and names of every
    method and their defaults), the values of their plain class attributes, and, found by the
    names their methods use, the functions and classes of the same module they call and its
    module-level constants (numbers, strings, tuples, arrays).  The compiled code identifies a
    class whose source cannot be found (one defined in an interactive session), and a file
    edited after the class was imported cannot pass for the running code.  The source of a
    class defined in the main script (``__main__``) is left out, its code kept: worker processes
    (joblib, Dask) receive such a class by value and cannot read its source, and must give it
    the identity the parent gave it.  Editing the class, or a helper
    it calls by name, gives a new key; two scripts with same-named classes share a key only
    when their code is the same.  What is reached otherwise (an attribute of another module,
    a function passed in at run time) is not seen.

    A value that cannot be put in canonical form (a function or lambda, an open file, an object
    that is neither a dataclass nor a perturbation) raises a ValueError naming the class, the
    field and the reason.

    An object with a ``__fbsgd_canonical__()`` method (a :class:`fbsgd.problems.Dataset`, a
    :class:`fbsgd.passes.Composite`) gives its own canonical text, a string.
    """
    own = getattr(type(p), "__fbsgd_canonical__", None)
    if own is not None and not isinstance(p, type):
        text = own(p)
        if not isinstance(text, str):
            raise ValueError(f"{type(p).__qualname__}.__fbsgd_canonical__() must return a string, got {type(text).__name__}")
        return text
    return _canon(p, type(p).__qualname__, "value", None)


def _refuse(owner: str, name: str, why: str):
    raise ValueError(f"{owner}: field {name!r} cannot be put in canonical form (the cache key and the random streams "
                     f"are built from it): {why}. Allowed: {_CANONICAL_ALLOWED}")


def _annotated(tp) -> str | None:
    """'float', 'int' or 'bool' when a field's annotation is that type (or it | None), else None."""
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))
    text = text.replace("Optional[", "").replace("typing.", "").rstrip("]")
    kinds = {t.strip() for t in text.split("|")} - {"None"}
    return kinds.pop() if len(kinds) == 1 and kinds <= {"float", "int", "bool"} else None


def _number(v, owner: str, name: str, kind: str | None) -> str:
    if isinstance(v, float) and math.isnan(v):
        _refuse(owner, name, "it is NaN, which is not equal to itself")
    if kind == "bool" and not isinstance(v, bool) and v in (0, 1):
        return repr(bool(v))
    if isinstance(v, bool):
        return repr(v)
    if kind == "float":
        try:
            f = float(v)
        except OverflowError:
            f = None
        if f is not None and f == v:
            return repr(f + 0.0)  # + 0.0: -0.0 is 0.0
    if isinstance(v, int):
        return repr(v)
    if math.isfinite(v) and v.is_integer():
        return repr(int(v))
    return repr(v + 0.0)


def _canon(v, owner: str, name: str, kind: str | None) -> str:
    if isinstance(v, np.generic) and not isinstance(v, np.ndarray):
        v = v.item()
    if v is None or isinstance(v, str):
        return repr(v)
    if isinstance(v, (bool, int, float)):
        return _number(v, owner, name, kind)
    if isinstance(v, bytes):
        return repr(v)
    if isinstance(v, tuple):
        items = [_canon(x, owner, f"{name}[{i}]", None) for i, x in enumerate(v)]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_canon(x, owner, f"{name}[{i}]", None) for i, x in enumerate(v)) + "]"
    if isinstance(v, (set, frozenset)):
        elems = list(v)
        numeric = all(isinstance(x, (int, float, np.integer, np.floating)) for x in elems)
        texts = [_canon(x, owner, f"{name} element", None) for x in elems]
        order = sorted(range(len(elems)), key=(lambda i: (elems[i], texts[i])) if numeric else (lambda i: texts[i]))
        return "frozenset({" + ", ".join(texts[i] for i in order) + "})" if elems else "frozenset()"
    if isinstance(v, dict):
        items = sorted((_canon(k, owner, f"{name} key", None), _canon(x, owner, f"{name}[{k!r}]", None)) for k, x in v.items())
        return "{" + ", ".join(f"{k}: {x}" for k, x in items) + "}"
    if isinstance(v, range):  # equal ranges (range(0, 3) == range(0, 3, 1)) have one text
        if len(v) == 0:
            return "range(0)"
        step = v.step if len(v) > 1 else 1
        return f"range({v[0]}, {v[-1] + step}, {step})"
    if isinstance(v, np.ndarray):
        if v.dtype.kind not in "biuf":
            _refuse(owner, name, f"it is a numpy array of dtype {v.dtype}, not of numbers")
        if v.dtype.kind == "f" and np.isnan(v).any():
            _refuse(owner, name, "it is an array with NaN entries, which are not equal to themselves")
        kind = {"f": "float", "b": "bool"}.get(v.dtype.kind)
        values = "[" + ", ".join(_number(x, owner, name, kind) for x in v.ravel().tolist()) + "]"
        return f"array(shape={tuple(v.shape)}, dtype={v.dtype.name!r}, values={values})"
    if isinstance(v, type):
        _refuse(owner, name, f"it is a class ({v.__qualname__}); store an instance of it or a name")
    if isinstance(v, Perturbation) or _dc.is_dataclass(v):
        return _object(v)
    if callable(v):
        what = "a lambda" if getattr(v, "__name__", "") == "<lambda>" else \
            f"a function ({getattr(v, '__qualname__', getattr(v, '__name__', type(v).__name__))})"
        _refuse(owner, name, f"it is {what}, whose behaviour a field's value cannot show; give the class a method, "
                             "or call a module-level function of its module by name")
    _refuse(owner, name, f"it is an object of type {type(v).__name__}, which has no fields to read "
                         "(make it a dataclass or a Perturbation)")


def _instance_fields(obj) -> list:
    """(name, value) of a non-dataclass object's own attributes, sorted by name."""
    cls = type(obj)
    out = dict(getattr(obj, "__dict__", {}))
    for c in cls.__mro__:
        for s in ([c.__dict__["__slots__"]] if isinstance(c.__dict__.get("__slots__"), str) else c.__dict__.get("__slots__", ())):
            if s not in ("__dict__", "__weakref__") and hasattr(obj, s):
                out.setdefault(s, getattr(obj, s))
    return sorted((k, v) for k, v in out.items() if not isinstance(inspect.getattr_static(cls, k, None), functools.cached_property))


def _object(obj) -> str:
    cls = type(obj)
    owner = cls.__qualname__
    if _dc.is_dataclass(obj):
        items = [(f.name, getattr(obj, f.name), _annotated(f.type)) for f in _dc.fields(obj) if f.compare]
    else:
        items = [(k, v, None) for k, v in _instance_fields(obj)]
    tag = f"<source:{_code_hash(cls)}>" if _user_code(cls) else ""
    return f"{owner}{tag}(" + ", ".join(f"{k}={_canon(v, owner, k, kind)}" for k, v, kind in items) + ")"


def _user_code(obj) -> bool:
    """Defined outside fbsgd, the builtins and the standard library (so its code is not in fbsgd's source hash)."""
    top = (getattr(obj, "__module__", None) or "").split(".")[0]
    return bool(top) and top != "fbsgd" and top != "builtins" and top not in sys.stdlib_module_names


def _lenient(c) -> str:
    """A deterministic text of a compiled constant or class attribute (NaN and -0.0 kept as they are)."""
    if isinstance(c, types.CodeType):
        return _code_text(c)
    if isinstance(c, float):
        return c.hex()
    if isinstance(c, (tuple, list)):
        return "(" + ", ".join(_lenient(x) for x in c) + ")"
    if isinstance(c, (frozenset, set)):
        return "{" + ", ".join(sorted(_lenient(x) for x in c)) + "}"
    if isinstance(c, dict):
        return "{" + ", ".join(sorted(f"{_lenient(k)}: {_lenient(x)}" for k, x in c.items())) + "}"
    if isinstance(c, np.ndarray):
        return f"array{c.shape}{c.dtype.str}:{hashlib.sha256(np.ascontiguousarray(c).tobytes()).hexdigest()}"
    if c is None or isinstance(c, (str, bytes, int, complex, np.generic)) or c is Ellipsis:
        return repr(c)
    return type(c).__name__


@functools.lru_cache(maxsize=4096)
def _code_text(code: types.CodeType) -> str:
    """Bytecode, constants (recursively), names and argument names of a code object; no file name or line numbers."""
    return "|".join([code.co_name, code.co_code.hex(), _lenient(code.co_consts), ",".join(code.co_names),
                     ",".join(code.co_varnames), str(code.co_argcount), str(code.co_kwonlyargcount), str(code.co_flags)])


@functools.lru_cache(maxsize=4096)
def _names(code: types.CodeType) -> frozenset:
    """The global and attribute names a code object and the code nested in it use."""
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out |= _names(c)
    return frozenset(out)


@functools.lru_cache(maxsize=1024)
def _source_of(obj) -> str:
    """The source text of a class or function ('' when it cannot be found: an interactive session);
    kept per object, so it is the source of the code that runs."""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


def _functions(cls) -> list:
    """The functions a class defines (methods, static and class methods, properties, cached properties)."""
    out = []
    for _, v in sorted(vars(cls).items()):
        for f in (v, getattr(v, "__func__", None), getattr(v, "fget", None), getattr(v, "fset", None),
                  getattr(v, "fdel", None), getattr(v, "func", None), getattr(v, "py_func", None)):
            if isinstance(f, types.FunctionType):
                out.append(f)
    return out


def _code_hash(cls) -> str:
    """16 hex digits over a user class's code (see :func:`canonical`): its MRO outside fbsgd and the
    standard library, and what of its module its methods call by name."""
    units, seen, todo = [], set(), [c for c in cls.__mro__ if _user_code(c)]
    while todo:
        u = todo.pop()
        if u in seen:
            continue
        seen.add(u)
        if isinstance(u, type):
            funcs = _functions(u)
            attrs = [f"{k}={_lenient(v)}" for k, v in sorted(vars(u).items())
                     if not k.startswith("__") and not isinstance(v, (types.FunctionType, staticmethod, classmethod,
                                                                       property, functools.cached_property, type))
                     and not hasattr(v, "py_func")]
        else:
            funcs, attrs = [u], []
        code = "\n".join(_code_text(f.__code__) + _lenient(f.__defaults__)
                         + _lenient(tuple(sorted((f.__kwdefaults__ or {}).items()))) for f in funcs)
        # the source of the main script's code is left out: a worker process (joblib, Dask) gets it by value and
        # cannot read it, and its identity must be the parent's
        source = _source_of(u) if u.__module__ != "__main__" else ""
        units.append(f"{u.__qualname__}\n{source}\n{code}\n" + "\n".join(attrs))
        for f in funcs:
            g = f.__globals__
            for name in sorted(_names(f.__code__)):
                if name not in g:
                    continue
                v = g[name]
                v = getattr(v, "py_func", v) if not isinstance(v, type) else v
                if isinstance(v, (types.FunctionType, type)):
                    if getattr(v, "__module__", None) == f.__module__ and _user_code(v) and v not in seen:
                        todo.append(v)
                elif v is None or isinstance(v, (bool, int, float, str, bytes, tuple, list, dict, set, frozenset,
                                                 np.ndarray, np.generic)):
                    units.append(f"{name}={_lenient(v)}")  # a module-level constant (no module name: a script run
                    # directly and the same file imported are one code)
    return hashlib.sha256("\n\0".join(sorted(units)).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------
# what a perturbation actually does to given inputs
# ---------------------------------------------------------------------------


def measure(p: Perturbation, x: np.ndarray, seed: int = 0, steps: int = 1) -> dict:
    """Empirical law of δ = P(x) − x on the inputs ``x`` over ``steps`` calls.

    Returns the mean and second moment of the entries of δ, the relative size
    ‖δ‖/‖x‖ (Frobenius, pooled over the steps), the correlation of δ with x
    (state dependence), the fraction of non-finite outputs and the number of
    steps at which the perturbation acted.  Only finite entries enter the moments.
    """
    x = np.asarray(x, dtype=float)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("measure: x must be a non-empty array of finite numbers")
    steps = _integer("measure", "steps", steps, min=1)
    state = p.init(seed)
    deltas, acted = [], 0
    for t in range(steps):
        out, state = p(x, state)
        acted += int(p.active(t))
        deltas.append(np.asarray(out, dtype=float) - x)
    d = np.stack(deltas)
    finite = np.isfinite(d)
    dx = np.broadcast_to(x, d.shape)[finite]
    df = d[finite]
    corr = float(np.corrcoef(df, dx)[0, 1]) if df.size > 1 and df.std() > 0 and dx.std() > 0 else 0.0
    return dict(mean=float(df.mean()) if df.size else float("nan"),
                second_moment=float(np.mean(df**2)) if df.size else float("nan"),
                relative_size=float(np.sqrt(np.sum(df**2) / np.sum(dx**2))) if np.sum(dx**2) > 0 else float("nan"),
                correlation=corr, nonfinite_fraction=float(1.0 - finite.mean()), active_steps=acted)


def check(p: Perturbation, x, *, draws: int = 2000, seed: int = 0, z: float = 6.0, rtol: float = 1e-9,
          raise_on_disagreement: bool = False) -> laws.CheckReport:
    """Compare what ``p`` declares with what it does on the inputs ``x``; a :class:`fbsgd.laws.CheckReport`
    lists every disagreement with its numbers (``report.ok``; ``raise_on_disagreement=True`` raises a
    ValueError with the report instead).

    What it does is measured by ``draws`` calls of its own ``apply`` (``transform``) with fresh keys
    at a step where it acts.  Compared:

    * ``conditional_law(x)`` with those draws: a finite support must contain every draw, a uniform
      one bound them, and the mean and second moment must agree within ``z`` standard errors;
      an exact conditional law that agrees is then the measurement below;
    * ``law.zero_mean``: E[δ | x] = 0 entry by entry; ``law.mean``, ``law.second_moment``,
      ``law.fourth_moment``: against E[δ | x], E[δ² | x], E[δ⁴ | x] averaged over the entries;
      ``law.additive``: the same E[δ | x] and E[δ² | x] for every entry; ``law.bound`` (with
      ``relative_bound``): against the largest abs(δ) of the support or the draws; ``law.support``;
    * ``schedule``: at a step where it says the kind does not act, ``apply`` leaves x unchanged;
    * ``compiled()``: against ``apply`` on x and on probe inputs of its operation, number for
      number (:func:`check_compiled`).

    Tolerances: ``z`` standard errors of the Monte Carlo estimates plus ``rtol`` times the scale
    (abs(x) + the size of δ) for the rounding in exact numbers.
    """
    return laws.check(p, x, draws=draws, seed=seed, z=z, rtol=rtol, raise_on_disagreement=raise_on_disagreement)


def check_compiled(p: Perturbation, x=None, seed: int = 0) -> None:
    """Raise a ValueError naming the field and one input where ``p.compiled()`` and ``p``'s ``apply``
    differ (:func:`fbsgd.laws.check_compiled`); None when they agree or ``p`` has no compiled form.
    The engine's ``run_sweep`` calls it once per kind before it computes."""
    return laws.check_compiled(p, x, seed=seed)


# ---------------------------------------------------------------------------
# where perturbations enter a chain
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Where perturbations enter a chain of N operators.

    ``forward[i]``  (1 <= i <= N):  ỹ_i = f_i(ỹ_{i-1}, w_i) + δ_i      (5a)
    ``backward[i]`` (2 <= i <= N):  ṽ_{i-1} = ∇₁f_i(ỹ_{i-1}, w_i)ᵀ ṽ_i + ε_i   (5b)

    ``init(seed)`` gives each placed perturbation its own stream, keyed by
    the seed and its place in the chain.
    """

    forward: Mapping[int, Perturbation] = field(default_factory=dict)
    backward: Mapping[int, Perturbation] = field(default_factory=dict)

    def __post_init__(self):
        for where, perts, lowest in (("forward", self.forward, 1), ("backward", self.backward, 2)):
            allowed = (f"a dict from operator index (an int >= {lowest}) to Perturbation, "
                       f"e.g. {where}={{{lowest}: p}}")
            if not isinstance(perts, Mapping):
                raise TypeError(f"Plan: {where} must be {allowed}; got a {type(perts).__name__}")
            for i, p in perts.items():
                if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
                    raise TypeError(f"Plan: {where} must be {allowed}; its key {i!r} is a {type(i).__name__}")
                if not isinstance(p, Perturbation):
                    raise ValueError(f"Plan: {where}[{i}] must be a Perturbation, got {p!r}")

    def validate(self, n_operators: int) -> None:
        for i in self.forward:
            if not 1 <= i <= n_operators:
                raise ValueError(f"forward perturbation at operator {i}: allowed 1..{n_operators}")
        for i in self.backward:
            if not 2 <= i <= n_operators:
                raise ValueError(f"backward perturbation at operator {i}: allowed 2..{n_operators}")

    def places(self):
        """((where, i), perturbation) for every placed perturbation."""
        return [((w, i), p) for w, perts in (("forward", self.forward), ("backward", self.backward)) for i, p in perts.items()]

    def init(self, seed: int) -> dict:
        return {place: p.init(rng.derive_key("fbsgd.plan", seed, *place)) for place, p in self.places()}

    def perturb(self, where: str, i: int, x: np.ndarray, state: dict):
        """Apply the perturbation placed at (where, i), if any; return (x̃, state)."""
        p = (self.forward if where == "forward" else self.backward).get(i)
        if p is None:
            return x, state
        if (where, i) not in state:
            raise ValueError(f"Plan: no state for the perturbation at {where}[{i}]; pass the state returned by plan.init(seed)")
        x, s = p(x, state[(where, i)])
        return x, {**state, (where, i): s}
