"""What a perturbation does to a given input, and whether it is what it says it is.

A perturbation P describes itself through ``p.law`` (:class:`fbsgd.perturbations.Law`: one law of
δ = P(x) − x for every input).  Rounding, compression and bit flips are not like that: their error
is a function of the input.  This module gives the law of P(x) *given* x, entry by entry, and the
checks that compare what a kind declares with what it does.

The conditional law given the input
-----------------------------------
``p.conditional_law(x)`` returns a :class:`ConditionalLaw` describing, for every entry of P(x),
the distribution of that entry given x (its marginal law; whether the entries are independent given
x is the flag ``independent``):

* :class:`FiniteLaw` — finite support, exact: ``points`` and ``probabilities`` (shape ``x.shape + (K,)``).
  Rounding to nearest (one point), stochastic rounding (the two neighbours in the format, with
  their probabilities), Top-K (one point), Rand-K (kept and scaled with probability k/n, else 0),
  bit flips (every flip pattern of a field of at most 8 bits; for wider fields to first order in
  the rate: see :meth:`fbsgd.perturbations.BitFlip.conditional_law`), constants, two-point noise;
* :class:`UniformLaw`, :class:`GaussianLaw` — additive noise: the moments of δ in closed form,
  expectations of functions of P(x) by Gauss–Legendre / Gauss–Hermite quadrature;
* :class:`MonteCarloLaw` — any other kind: ``draws`` independent calls of the kind's own
  ``transform`` with fresh keys (:func:`monte_carlo`); every moment comes with its standard error.

Every law answers ``mean()`` (E[P(x) | x] per entry), ``bias()`` (E[δ | x]), ``second_moment()``
(E[δ² | x]), ``moment(k)``, ``variance()``, ``expect(fn)`` (E[fn(P(x)) | x]), the standard errors
``mean_se()`` / ``second_moment_se()`` (zero for the exact laws) and ``norm_moments()`` (‖E[δ|x]‖²,
E[‖δ‖² | x], E[‖δ‖⁴ | x] of δ as one vector).  The law is that of a step where the perturbation
acts; a schedule (``every``, ``at_steps``, ``budget``) is reported separately by ``duty_cycle()``.

Perturbations that cannot lie
-----------------------------
:func:`check` compares what a kind declares — its law's mean, moments, zero mean given the input,
additivity, bound and support, its conditional law, its schedule and its compiled form — with what
its ``apply`` does on sample inputs, and returns a :class:`CheckReport` listing every disagreement
with its numbers.  :func:`check_compiled` is the part the engine needs: the compiled form, evaluated
with the element functions the compiled engine uses (:func:`fbsgd.lowprec.round_scalar`,
:func:`fbsgd.lowprec.flip_bits_inplace`, the draws of :mod:`fbsgd.rng`), must give the same numbers
as ``apply`` on the same inputs, keys and steps; it raises a ValueError naming the field and one
input where they differ.

This module knows perturbations only through their protocol (``law``, ``schedule``, ``compiled()``,
``init_memory()``, ``transform``); :mod:`fbsgd.perturbations` imports it, not the other way round.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from fbsgd import lowprec, rng

__all__ = [
    "DEFAULT_DRAWS",
    "BLOWN_UP",
    "DETERMINISTIC_AFTER",
    "ConditionalLaw",
    "FiniteLaw",
    "UniformLaw",
    "GaussianLaw",
    "MonteCarloLaw",
    "stationary",
    "as_input",
    "point_law",
    "round_neighbours",
    "monte_carlo",
    "duty_cycle",
    "evaluate_compiled",
    "probe_inputs",
    "Disagreement",
    "CheckReport",
    "check",
    "check_compiled",
]

DEFAULT_DRAWS = 1000
BLOWN_UP = 1e6  # :func:`stationary`: a memory this many times the input's size has blown up
"""Draws of a Monte Carlo conditional law when none are asked for."""

_QUADRATURE_NODES = 64  # Gauss–Legendre / Gauss–Hermite nodes of the additive laws' expectations


def as_input(x, owner: str = "conditional_law") -> np.ndarray:
    """``x`` as a float64 array (float32 values are converted exactly), or a ValueError naming x."""
    a = np.asarray(x)
    if a.dtype.kind not in "iuf" or a.size == 0:
        raise ValueError(f"{owner}: x must be a non-empty array of real numbers, got "
                         f"{'an empty array' if a.size == 0 else f'dtype {a.dtype}'}")
    return a.astype(np.float64)


def _draws(owner: str, draws) -> int:
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 2:
        raise ValueError(f"{owner}: draws must be an integer >= 2, got {draws!r}")
    return int(draws)


# ---------------------------------------------------------------------------
# schedules: the fraction of steps at which a perturbation acts
# ---------------------------------------------------------------------------


def duty_cycle(schedule, horizon: int | None = None) -> float:
    """The fraction of the steps 0..horizon−1 at which ``schedule`` acts (a
    :class:`fbsgd.perturbations.Schedule`; None: at every step).

    ``horizon=None``: the long-run fraction, 1/interval for a schedule that acts forever; a
    schedule that stops (``budget``, ``at_steps``) has no long-run fraction other than 0, and
    is refused there with a ValueError asking for the horizon.
    """
    if schedule is None:
        return 1.0
    if horizon is not None:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"duty_cycle: horizon must be an integer >= 1 or None, got {horizon!r}")
        return schedule.count(int(horizon)) / int(horizon)
    if schedule.empty:
        return 0.0
    if schedule.regular and schedule.last is None:
        return 1.0 / schedule.interval
    raise ValueError(f"duty_cycle: the schedule {schedule!r} stops acting, so its long-run fraction is 0; "
                     "give horizon=T for its fraction of the steps 0..T−1")


# ---------------------------------------------------------------------------
# the conditional laws
# ---------------------------------------------------------------------------


def _identity(v):
    return v


class ConditionalLaw:
    """The law of each entry of P(x) given the input x, at a step where P acts (see the module).

    Attributes: ``x`` (the input, float64), ``exact`` (the numbers are exact: no sampling and no
    truncation; closed-form quadrature counts as exact), ``how`` (a short description),
    ``elementwise`` (the law of entry i is a function of x_i alone, so the law can be evaluated
    at any array of inputs), ``independent`` (the entries of P(x) are independent given x),
    ``schedule`` (when the perturbation acts; None: at every step).
    """

    exact: bool = True
    how: str = ""

    def __init__(self, x, *, elementwise: bool = True, independent: bool = True):
        self.x = as_input(x)
        self.elementwise = bool(elementwise)
        self.independent = bool(independent)
        self.schedule = None

    # -- to be given by each law ---------------------------------------------------------------
    def expect(self, fn) -> np.ndarray:
        """E[fn(P(x)) | x] per entry; ``fn`` acts elementwise on arrays (an extra last axis
        carries the support points, quadrature nodes or draws)."""
        raise NotImplementedError

    def moment(self, k: int) -> np.ndarray:
        """E[δ^k | x] per entry, δ = P(x) − x."""
        x = self.x[..., None]
        return self.expect(lambda v: (v - x) ** k)

    # -- derived ---------------------------------------------------------------------------------
    def mean(self) -> np.ndarray:
        """E[P(x) | x] per entry."""
        return self.expect(_identity)

    def bias(self) -> np.ndarray:
        """E[δ | x] per entry."""
        with np.errstate(invalid="ignore"):
            return self.mean() - self.x

    def second_moment(self) -> np.ndarray:
        """E[δ² | x] per entry."""
        return self.moment(2)

    def fourth_moment(self) -> np.ndarray:
        """E[δ⁴ | x] per entry."""
        return self.moment(4)

    def variance(self) -> np.ndarray:
        """Var[P(x) | x] = E[δ² | x] − E[δ | x]² per entry (not below 0)."""
        with np.errstate(invalid="ignore", over="ignore"):
            return np.maximum(self.second_moment() - self.bias() ** 2, 0.0)

    def mean_se(self) -> np.ndarray:
        """Standard error of :meth:`mean` (0: exact)."""
        return np.zeros_like(self.x)

    def second_moment_se(self) -> np.ndarray:
        """Standard error of :meth:`second_moment` (0: exact)."""
        return np.zeros_like(self.x)

    def norm_moments(self) -> tuple[float, float, float]:
        """(‖E[δ|x]‖², E[‖δ‖² | x], E[‖δ‖⁴ | x]) for δ = P(x) − x as one vector (all entries of x).

        With entries independent given x, E‖δ‖⁴ = Σ E δ_i⁴ + (Σ E δ_i²)² − Σ (E δ_i²)²;
        a law whose entries are not independent raises NotImplementedError (estimate the
        joint law by :func:`monte_carlo`)."""
        if not self.independent:
            raise NotImplementedError(f"{self.how}: the entries are not independent given x, so E‖δ‖⁴ needs "
                                      "their joint law; estimate it with fbsgd.laws.monte_carlo")
        b, m2, m4 = self.bias(), self.second_moment(), self.fourth_moment()
        s2 = float(np.sum(m2))
        return float(np.sum(b * b)), s2, float(np.sum(m4) + s2 * s2 - np.sum(m2 * m2))

    def with_schedule(self, schedule) -> "ConditionalLaw":
        """This law, acting on ``schedule`` (the wrappers ``Every``, ``AtSteps`` use it)."""
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.schedule = schedule
        return out

    def duty_cycle(self, horizon: int | None = None) -> float:
        """The fraction of steps at which the perturbation acts (:func:`duty_cycle`)."""
        return duty_cycle(self.schedule, horizon)

    def __repr__(self):
        sched = "" if self.schedule is None else f", schedule={self.schedule!r}"
        return f"{type(self).__name__}({self.how}, x.shape={self.x.shape}{sched})"


def _weighted(p, v):
    """Σ_k p_k v_k over the last axis, with 0·(inf or NaN) = 0 for points of probability 0."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.sum(np.where(p > 0, p * v, 0.0), axis=-1)


class FiniteLaw(ConditionalLaw):
    """P(x) takes the values ``points[..., k]`` with ``probabilities[..., k]`` (exact, unless
    ``exact=False`` says the probabilities are an approximation, as for bit flips to first order)."""

    def __init__(self, x, points, probabilities, *, how: str = "finite support", exact: bool = True,
                 elementwise: bool = True, independent: bool = True, neglected_mass=None):
        super().__init__(x, elementwise=elementwise, independent=independent)
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape[:-1] != self.x.shape:
            raise ValueError(f"FiniteLaw: points must have shape x.shape + (K,) = {self.x.shape} + (K,), got {pts.shape}")
        prob = np.broadcast_to(np.asarray(probabilities, dtype=np.float64), pts.shape)
        if not np.all(np.isfinite(prob) & (prob >= 0)) or not np.allclose(prob.sum(axis=-1), 1.0, rtol=0, atol=1e-12):
            raise ValueError("FiniteLaw: probabilities must be >= 0 and sum to 1 over the last axis")
        self.points, self.probabilities = pts, np.array(prob)
        self.how, self.exact = how, bool(exact)
        self.neglected_mass = neglected_mass
        if pts.shape[-1] == 1:  # deterministic given x: independent whatever the kind
            self.independent = True

    def expect(self, fn):
        return _weighted(self.probabilities, fn(self.points))

    def moment(self, k):
        with np.errstate(invalid="ignore", over="ignore"):
            return _weighted(self.probabilities, (self.points - self.x[..., None]) ** k)


def point_law(x, value, how: str = "deterministic", **kw) -> FiniteLaw:
    """The law of a deterministic P: P(x) = ``value`` (one point per entry)."""
    x = as_input(x)
    v = np.broadcast_to(np.asarray(value, dtype=np.float64), x.shape)
    return FiniteLaw(x, v[..., None], np.ones(x.shape + (1,)), how=how, **kw)


def _additive_norm_moments(x, m1, m2, m4, per_sample):
    """(‖Eδ‖², E‖δ‖², E‖δ‖⁴) of additive noise with raw moments m1, m2, m4 per draw: one draw per
    entry (``per_sample``) or one per column shared by the rows (the layout of :mod:`fbsgd.perturbations`)."""
    n = x.size
    if per_sample:
        return n * m1 * m1, n * m2, n * m4 + n * (n - 1) * m2 * m2
    rows = x.shape[0] if x.ndim else 1
    g = n // rows  # draws, each shared by ``rows`` entries: ‖δ‖² = rows Σ_g δ_g²
    return n * m1 * m1, n * m2, rows * rows * (g * m4 + g * (g - 1) * m2 * m2)


class UniformLaw(ConditionalLaw):
    """P(x) = x + δ with δ ~ U(low, high): moments in closed form, expectations by Gauss–Legendre
    quadrature with ``nodes`` points (exact for polynomials of degree < 2·nodes)."""

    def __init__(self, x, low: float, high: float, *, per_sample: bool = True, nodes: int = _QUADRATURE_NODES):
        super().__init__(x, elementwise=True, independent=per_sample)
        self.low, self.high, self.per_sample, self.nodes = float(low), float(high), bool(per_sample), int(nodes)
        self.how = f"uniform δ ~ U({self.low:g}, {self.high:g}), closed form"

    def raw_moment(self, k: int) -> float:
        """E δ^k = (high^{k+1} − low^{k+1}) / ((k+1)(high − low))."""
        a, b = self.low, self.high
        if a == b:
            return a**k
        return (b ** (k + 1) - a ** (k + 1)) / ((k + 1) * (b - a))

    def expect(self, fn):
        if self.low == self.high:
            return fn(self.x[..., None] + self.low)[..., 0]
        t, w = np.polynomial.legendre.leggauss(self.nodes)
        d = 0.5 * (self.low + self.high) + 0.5 * (self.high - self.low) * t
        return fn(self.x[..., None] + d) @ (0.5 * w)

    def mean(self):
        return self.x + 0.5 * (self.low + self.high)

    def moment(self, k):
        return np.full(self.x.shape, self.raw_moment(k))

    def norm_moments(self):
        return _additive_norm_moments(self.x, self.raw_moment(1), self.raw_moment(2), self.raw_moment(4), self.per_sample)


class GaussianLaw(ConditionalLaw):
    """P(x) = x + δ with δ ~ N(mean, std²): moments in closed form, expectations by Gauss–Hermite quadrature."""

    def __init__(self, x, mean: float, std: float, *, per_sample: bool = True, nodes: int = _QUADRATURE_NODES):
        super().__init__(x, elementwise=True, independent=per_sample)
        self.mu, self.std, self.per_sample, self.nodes = float(mean), float(std), bool(per_sample), int(nodes)
        self.how = f"gaussian δ ~ N({self.mu:g}, {self.std:g}²), closed form"

    def raw_moment(self, k: int) -> float:
        """E δ^k in closed form for k ≤ 4, by quadrature above."""
        m, s = self.mu, self.std
        if k <= 4:
            return (1.0, m, m * m + s * s, m**3 + 3 * m * s * s, m**4 + 6 * m * m * s * s + 3 * s**4)[k]
        return float(super().moment(k).flat[0])

    def expect(self, fn):
        if self.std == 0:
            return fn(self.x[..., None] + self.mu)[..., 0]
        t, w = np.polynomial.hermite_e.hermegauss(self.nodes)
        return fn(self.x[..., None] + (self.mu + self.std * t)) @ (w / math.sqrt(2 * math.pi))

    def mean(self):
        return self.x + self.mu

    def moment(self, k):
        return np.full(self.x.shape, self.raw_moment(k))

    def norm_moments(self):
        return _additive_norm_moments(self.x, self.raw_moment(1), self.raw_moment(2), self.raw_moment(4), self.per_sample)


class MonteCarloLaw(ConditionalLaw):
    """The empirical law of ``samples[..., j]`` (``draws`` independent calls of the kind, shape
    ``x.shape + (draws,)``); every moment has a standard error.  Not exact."""

    exact = False

    def __init__(self, x, samples, how: str = "Monte Carlo"):
        super().__init__(x, elementwise=False, independent=False)
        s = np.asarray(samples, dtype=np.float64)
        if s.shape[:-1] != self.x.shape or s.shape[-1] < 2:
            raise ValueError(f"MonteCarloLaw: samples must have shape x.shape + (draws >= 2,), got {s.shape}")
        self.samples = s
        self.draws = s.shape[-1]
        self.how = f"{how}, {self.draws} draws"

    def expect(self, fn):
        with np.errstate(invalid="ignore", over="ignore"):
            return np.mean(fn(self.samples), axis=-1)

    def expect_se(self, fn):
        """Standard error of :meth:`expect` per entry."""
        with np.errstate(invalid="ignore", over="ignore"):
            return np.std(fn(self.samples), axis=-1, ddof=1) / math.sqrt(self.draws)

    def mean_se(self):
        return self.expect_se(_identity)

    def second_moment_se(self):
        x = self.x[..., None]
        return self.expect_se(lambda v: (v - x) ** 2)

    def norm_moments(self):
        """From the joint draws: ‖Eδ‖² by the unbiased U-statistic (‖Σ_j δ_j‖² − Σ_j ‖δ_j‖²)/(S(S−1)),
        E‖δ‖² and E‖δ‖⁴ by their sample means."""
        with np.errstate(invalid="ignore", over="ignore"):
            d = (self.samples - self.x[..., None]).reshape(-1, self.draws)
            sq = np.sum(d * d, axis=0)
            S = self.draws
            tot = np.sum(d, axis=1)
            mean_sq = (float(tot @ tot) - float(sq.sum())) / (S * (S - 1))
            return max(mean_sq, 0.0), float(sq.mean()), float(np.mean(sq * sq))


DETERMINISTIC_AFTER = 16
""":func:`monte_carlo` stops after this many draws when they are all equal (a deterministic kind)."""


def monte_carlo(p, x, draws: int = DEFAULT_DRAWS, seed: int = 0, *,
                stop_if_deterministic: int = DETERMINISTIC_AFTER) -> MonteCarloLaw:
    """The conditional law of ``p`` at ``x`` estimated from ``draws`` calls of its own ``transform``,
    each with a fresh stream key (derived from ``seed`` and the draw's number), at the first step
    where it acts and from fresh memory (a kind with memory, error feedback, is estimated at its
    first action).  The samples are common random numbers: equal arguments give equal samples.

    When the first ``stop_if_deterministic`` draws are all equal, number for number, the kind is
    taken as deterministic at x and those draws are the sample (0: never stop early; a kind whose
    randomness is rarer than that is then best given more draws and ``stop_if_deterministic=0``)."""
    x = as_input(x, "monte_carlo")
    draws = _draws("monte_carlo", draws)
    stop = int(stop_if_deterministic)
    sched = p.schedule
    if sched.empty:
        raise ValueError(f"monte_carlo: {p!r} never acts, so it has no law when it acts")
    step = sched.first if sched.steps is None else min(sched.steps)
    out = np.empty(x.shape + (draws,))
    for j in range(draws):
        key = rng.derive_key("fbsgd.laws.monte_carlo", int(seed), j)
        y = p.transform(x.copy(), key, step, p.init_memory())[0]
        out[..., j] = np.broadcast_to(np.asarray(y, dtype=np.float64).reshape(x.shape) if np.size(y) == x.size
                                      else np.asarray(y, dtype=np.float64), x.shape)
        if 2 <= stop == j + 1 < draws and np.all(_same(out[..., :j + 1], out[..., :1])):
            return MonteCarloLaw(x, out[..., :j + 1], how="Monte Carlo (deterministic: the draws agree)").with_schedule(sched)
    return MonteCarloLaw(x, out).with_schedule(sched)


def stationary(p, x, draws: int = DEFAULT_DRAWS, seed: int = 0, *, burn: int | None = None) -> MonteCarloLaw:
    """The law of a kind with memory at a frozen input ``x``, once its memory has settled: the kind
    acts on the same ``x`` at ``burn`` + ``draws`` consecutive steps where it acts (one stream, key
    from ``seed``), its memory carried from step to step, and the outputs of the last ``draws`` steps
    are the sample (``burn``: ``draws`` unless given).

    Why this law: with a step size γ → 0 the input of a perturbation moves by O(γ) per step, while
    a memory such as error feedback's residual or delta compression's copy reacts in O(1) steps, so
    over the many steps in which w barely moves the kind sees a frozen input, and SGD averages its
    outputs over them.  Error feedback's outputs at a frozen x average to x up to (e_end − e_start)/draws
    (the sum telescopes); delta compression's copy converges to x when its compressor is contractive.
    The result's ``memory_change`` is (memory after the last sample − memory before the first) / ``draws``
    (error feedback shifts its samples by it: its window's telescoping remainder).
    Samples over time are not independent: the standard errors of the result assume they are and are
    too small for a periodic or slowly mixing memory.  A memory that blows up at a frozen input (a
    non-contractive compressor, e.g. Rand-K scaled by n/k ≥ 2 under either corrector: a kept entry's
    residual is multiplied by 1 − n/k) has no settled law: once any entry of the memory exceeds
    :data:`BLOWN_UP` × (1 + max abs(x)), every sample, and so every moment, is NaN."""
    x = as_input(x, "stationary")
    draws = _draws("stationary", draws)
    burn = draws if burn is None else int(burn)
    if burn < 0:
        raise ValueError(f"stationary: burn must be >= 0, got {burn!r}")
    sched = p.schedule
    if sched.empty:
        raise ValueError(f"stationary: {p!r} never acts, so it has no law when it acts")
    key = rng.derive_key("fbsgd.laws.stationary", int(seed))
    scale = float(np.max(np.abs(x))) if x.size and np.all(np.isfinite(x)) else 0.0
    memory = p.init_memory()
    out = np.empty(x.shape + (draws,))
    step, taken, blown = (sched.first if sched.steps is None else min(sched.steps)), 0, False
    last = None if sched.steps is None else max(sched.steps)
    if last is not None and len(sched.steps) < burn + draws:
        raise ValueError(f"stationary: {p!r} acts at {len(sched.steps)} steps, fewer than burn + draws = {burn + draws}")
    with np.errstate(all="ignore"):
        while taken < burn + draws:
            if sched.active(step):
                y, memory = p.transform(x.copy(), key, step, memory)
                if taken == burn - 1 or (burn == 0 and taken == 0):
                    start = np.array(memory if burn else p.init_memory(), dtype=np.float64)
                if taken >= burn:
                    out[..., taken - burn] = np.asarray(y, dtype=np.float64).reshape(x.shape)
                m = np.abs(np.asarray(memory, dtype=float))
                blown = blown or not np.all(m <= BLOWN_UP * (1.0 + scale))  # NaN and inf included
                if blown:
                    out[...] = np.nan
                    break
                taken += 1
            step += 1
    how = "stationary at a frozen input" + (" (its memory blows up)" if blown else f", after {burn} steps")
    law = MonteCarloLaw(x, out, how=how).with_schedule(sched)
    law.memory_change = (np.full(x.shape, np.nan) if blown else
                         (np.asarray(memory, dtype=np.float64) - start).reshape(x.shape) / draws)
    return law


# ---------------------------------------------------------------------------
# rounding: the two neighbours of x in a format
# ---------------------------------------------------------------------------


def round_neighbours(x, fmt):
    """(lo, hi, p_up) per entry of ``x`` for a :class:`fbsgd.lowprec.Format` (or its name): the format
    values next to x with abs(lo) ≤ abs(x) ≤ abs(hi) (signed like x; lo = hi = x when x is a format value) and
    the probability (abs(x) − abs(lo))/(abs(hi) − abs(lo)) with which stochastic rounding picks hi.

    Entries that stochastic rounding rounds to nearest (abs(x) above the largest finite value, inf,
    NaN) get lo = hi = fl_nearest(x), p_up = 0.  Everything is exact: lo is abs(x) truncated to the
    format's quantum at x's exponent, 2^(max(e, emin) − man_bits), and the remainder over the
    quantum is a power-of-two scaling."""
    f = lowprec.format_of(fmt)
    x = as_input(x, "round_neighbours")
    a = np.abs(x)
    near = lowprec.round_array(x, f, "nearest")
    inside = np.isfinite(a) & (a <= f.max_finite) & (a > 0)
    ai = np.where(inside, a, 1.0)
    _, E = np.frexp(ai)
    k = np.maximum(E - 1, f.emin) - f.man_bits
    lo = np.ldexp(np.floor(np.ldexp(ai, -k)), k)
    p = np.ldexp(ai - lo, -k)
    hi = np.where(p > 0, lo + np.ldexp(1.0, k), lo)
    lo = np.where(inside, np.copysign(lo, x), near)
    hi = np.where(inside, np.copysign(hi, x), near)
    return lo, hi, np.where(inside, p, 0.0)


# ---------------------------------------------------------------------------
# the compiled form, evaluated with the engine's element functions
# ---------------------------------------------------------------------------


@njit(cache=True)
def _compiled_round(src, out, man_bits, emin, max_finite, has_inf, stochastic, key, step):
    for i in range(src.size):
        u = rng.uniform01_scalar(key, step, i) if stochastic else -1.0
        out[i] = lowprec.round_scalar(np.float64(src[i]), man_bits, emin, max_finite, has_inf, u)


@njit(cache=True)
def _compiled_uniform64(src, out, a, b, per_sample, key, step):
    for i in range(src.size):
        out[i] = src[i] + (a + (b - a) * rng.uniform01_scalar(key, step, i if per_sample else 0))


@njit(cache=True)
def _compiled_uniform32(src, out, a, b, per_sample, key, step):
    lo, wd = np.float32(a), np.float32(b - a)
    for i in range(src.size):
        out[i] = src[i] + (lo + wd * rng.uniform01_f32(key, step, i if per_sample else 0))


def evaluate_compiled(op, x, key: int, step: int) -> np.ndarray:
    """What the compiled engine computes for the compiled operation ``op`` (a
    :class:`fbsgd.perturbations.CompiledOp`) on the message ``x`` (its entries in C order are the
    engine's samples) at ``step`` with the stream ``key``, in x's precision (float32 or float64):

    * "uniform" (params (a, b)): x + a + (b − a)·u, u the draw of entry i (of entry 0 when the
      draw is shared), from :func:`fbsgd.rng.uniform01_scalar` in float64 and from
      :func:`fbsgd.rng.uniform01_f32` with float32 arithmetic in float32, as the engine's kernels;
    * "round" (params (man_bits, emin, max_finite, has_inf[, stochastic])): :func:`fbsgd.lowprec.round_scalar`
      of each entry with the draw of entry i (stochastic) — in float32 the input and the result are float32;
    * "bitflip" (params (rate, lo_bit, n_bits)): the flips :func:`fbsgd.lowprec.flip_bits_inplace` finds
      in the float32 patterns; in float64 an entry hit by a flip becomes that float32 value, the others stay;
    * "element" (a researcher's :class:`fbsgd.perturbations.ElementOp`): its function on every entry,
      :func:`fbsgd.lowprec.map_elements`;
    * "block" (a researcher's :class:`fbsgd.perturbations.BlockOp`): its function on the blocks of the
      message, :func:`fbsgd.lowprec.map_blocks` (rows: x's last dimension; one column: blocks over
      consecutive samples).
    """
    a = np.asarray(x)
    if a.dtype not in (np.float32, np.float64):
        raise ValueError(f"evaluate_compiled: x must be a float32 or float64 array, got dtype {a.dtype}")
    src = np.ascontiguousarray(a).reshape(-1)
    out = np.empty_like(src)
    k, s = np.uint64(int(key) % 2**64), int(step)
    kind, params = op.kind, tuple(op.params)
    if kind in ("element", "block"):
        return op.apply(a, key, step)
    if kind == "uniform":
        lo, hi = float(params[0]), float(params[1])
        if lo == 0.0 and hi == 0.0:  # the engine skips it
            return a.copy()
        fill = _compiled_uniform32 if src.dtype == np.float32 else _compiled_uniform64
        fill(src, out, lo, hi, bool(op.per_sample), k, s)
    elif kind == "round":
        man_bits, emin, max_finite, has_inf = int(params[0]), int(params[1]), float(params[2]), bool(params[3])
        stochastic = bool(params[4]) if len(params) > 4 else False
        _compiled_round(src, out, man_bits, emin, max_finite, has_inf, stochastic, k, s)
    elif kind == "bitflip":
        rate, lo_bit, n_bits = float(params[0]), int(params[1]), int(params[2])
        x32 = src.astype(np.float32)
        before = x32.view(np.uint32).copy()
        with np.errstate(over="ignore", invalid="ignore"):
            lowprec.flip_bits_inplace(x32, k, s, min(rate, 1.0), lo_bit, n_bits)
        if src.dtype == np.float32:
            out = x32
        else:
            hit = x32.view(np.uint32) != before
            out = src.copy()
            out[hit] = x32[hit]
    else:
        raise ValueError(f"evaluate_compiled: the compiled engine runs operations of kind 'uniform', 'round', "
                         f"'bitflip', 'element' and 'block', got {kind!r}")
    return out.reshape(a.shape)


def probe_inputs(op=None, n_random: int = 1024, seed: int = 0) -> np.ndarray:
    """Inputs on which a compiled form is compared with ``apply``: shape (n, 1) (one number per
    sample, the messages of the Section 7 chain), float64.  Zeros, signed values over many
    decades, and for a "round" operation its format's subnormals, ties between neighbours, powers
    of two, the largest finite value and values above it (overflow)."""
    g = np.random.default_rng(seed)
    vals = [np.zeros(2), [1.0, -1.0, 0.5, 3.0, -7.25, 1e-3, 123.456],
            g.standard_normal(n_random) * 10.0 ** g.uniform(-4, 4, n_random),
            np.logspace(-30, 30, 61), -np.logspace(-30, 30, 61)]
    if op is not None and op.kind == "round":
        man_bits, emin, max_finite = int(op.params[0]), int(op.params[1]), float(op.params[2])
        sub = 2.0 ** (emin - man_bits)
        e_max = int(math.floor(math.log2(max_finite)))
        grid = np.arange(0, 33) * (sub / 2)  # subnormals and the ties between them
        pows = 2.0 ** np.arange(emin - man_bits - 3, e_max + 4)
        q_top = 2.0 ** (e_max - man_bits)
        top = max_finite + np.array([-q_top, -q_top / 2, -q_top / 4, 0.0, q_top / 4, q_top / 2, q_top * 0.75, q_top])
        wide = np.exp(g.uniform(math.log(sub / 4), math.log(4 * max_finite), n_random))
        mant = 1.0 + (np.arange(2 ** min(man_bits + 1, 8)) + 0.5) / 2 ** min(man_bits + 1, 8)  # ties of the mantissa
        ties = np.concatenate([m * 2.0 ** np.arange(emin, e_max + 1) for m in mant])
        more = np.concatenate([grid, pows, top, top * 1.5, [2 * max_finite, 10 * max_finite], wide, ties])
        vals += [more, -more]
    v = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in vals])
    v = v[np.isfinite(v)]
    return v.reshape(-1, 1)


# ---------------------------------------------------------------------------
# checks: what a kind declares against what it does
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """One thing a perturbation declares that its behaviour contradicts."""

    field: str
    declared: object
    measured: object
    tolerance: object = None
    where: str = ""
    detail: str = ""

    def __str__(self):
        tol = "" if self.tolerance is None else f" (tolerance {_num(self.tolerance)})"
        where = f" at {self.where}" if self.where else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.field}: declared {_num(self.declared)}, measured {_num(self.measured)}{tol}{where}{detail}"


def _num(v):
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


@dataclass
class CheckReport:
    """What :func:`check` found: ``disagreements`` (empty: the perturbation is what it says) and
    ``notes`` (what was compared, and how)."""

    perturbation: str
    disagreements: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.disagreements

    def fields(self) -> list[str]:
        """The fields that disagree, in the order found."""
        return [d.field for d in self.disagreements]

    def __str__(self):
        head = f"check of {self.perturbation}: " + ("no disagreement" if self.ok else f"{len(self.disagreements)} disagreement(s)")
        return "\n".join([head] + [f"  - {d}" for d in self.disagreements] + [f"  · {n}" for n in self.notes])

    def raise_if_any(self) -> None:
        """A ValueError with the report's text when anything disagrees."""
        if not self.ok:
            raise ValueError(str(self))


def _same(a, b):
    """Elementwise equality with NaN equal to NaN (any payload)."""
    with np.errstate(invalid="ignore"):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return (a == b) | (np.isnan(a) & np.isnan(b))


def _first(mask):
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def _apply_at(p, x, key, step):
    y = p.transform(np.array(x, copy=True), key, step, p.init_memory())[0]
    return np.asarray(y).reshape(np.shape(x)) if np.size(y) == np.size(x) else np.asarray(y)


def _active_steps(schedule, count: int = 3, limit: int = 4096) -> list[int]:
    if schedule.empty:
        return []
    if schedule.steps is not None:
        return sorted(schedule.steps)[:count]
    out, t = [], schedule.first
    while len(out) < count and (schedule.last is None or t <= schedule.last) and t < limit + schedule.first:
        out.append(t)
        t += schedule.interval
    return out


def _compiled_field(op, x, c, a, n_diff, stoch_apply) -> str:
    """Which part of a compiled form disagrees with apply, as well as the inputs can tell."""
    bad = ~_same(c, a)
    if op.kind == "round":
        max_finite = float(op.params[2])
        xs = np.abs(np.asarray(x, dtype=np.float64))[bad]
        if xs.size and np.all((xs > max_finite * (1 - 2.0 ** -(int(op.params[0]) + 2))) | ~np.isfinite(np.asarray(c)[bad])
                              | ~np.isfinite(np.asarray(a, dtype=np.float64)[bad])):
            return "compiled().params: max_finite / has_inf (overflow)"
        stochastic = bool(op.params[4]) if len(op.params) > 4 else False
        if stoch_apply is not None and stoch_apply != stochastic:
            return "compiled().params: stochastic"
        return "compiled().params: man_bits / emin"
    if op.kind == "uniform":
        xs = np.asarray(x, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.asarray(a, dtype=np.float64) - xs
        d = d[np.isfinite(d) & (np.abs(xs) <= 1.0)]  # small inputs: δ = apply − x is read without loss
        shared = d.size > 1 and bool(np.all(np.abs(d - d[0]) <= 1e-9))
        if d.size > 1 and shared == bool(op.per_sample):
            return "compiled().per_sample"
        return "compiled().params: (low, high)"
    if op.kind == "element":
        return "compiled(): fn / numbers"
    if op.kind == "block":
        return "compiled(): fn / block / numbers"
    return "compiled().params: (rate, lo_bit, n_bits)"


def _compare_compiled(p, x, seed: int = 0):
    """None, or a dict (field, message, x, compiled, apply, differ, total, dtype, step) for the first
    place where the compiled form and apply differ."""
    try:
        op = p.compiled()
    except NotImplementedError:
        return None
    if op.kind not in ("uniform", "round", "bitflip", "element", "block"):
        if isinstance(getattr(type(op), "FIELDS", None), tuple) and op.kind:
            return None  # a named compiled form evaluated by its own engine (Top-K, Rand-K, the correctors), not here
        return dict(field="compiled().kind", message=f"{p!r}: compiled() gives an operation of kind {op.kind!r}, which "
                                                     "the compiled engine does not run (it runs 'uniform', 'round', "
                                                     "'bitflip', 'element' and 'block')")
    steps = _active_steps(p.schedule)
    if not steps:
        return None
    x64 = np.asarray(x, dtype=np.float64)
    precisions = [np.float64, np.float32] if op.kind != "uniform" else [np.float64]
    for j in range(2):
        key = rng.derive_key("fbsgd.laws.check_compiled", int(seed), j)
        for t in steps:
            for dt in precisions:
                with np.errstate(over="ignore", invalid="ignore"):
                    xin = x64.astype(dt)
                    c = evaluate_compiled(op, xin, key, t)
                    a = _apply_at(p, xin, key, t)
                if np.shape(a) != np.shape(c):
                    return dict(field="apply", message=f"{p!r}: apply returns shape {np.shape(a)} for a message of "
                                                       f"shape {np.shape(c)}")
                bad = ~_same(c, a)
                if bad.any():
                    i = _first(bad.ravel())
                    other = _apply_at(p, xin, rng.fold_key(key, 1), t)
                    stoch_apply = bool(np.any(~_same(other, a)))
                    fld = _compiled_field(op, xin, c, a, int(bad.sum()), stoch_apply)
                    xv, cv = float(xin.ravel()[i]), float(np.asarray(c).ravel()[i])
                    with np.errstate(invalid="ignore"):
                        av = float(np.asarray(a, dtype=np.float64).ravel()[i])
                    msg = (f"{p!r}: compiled() and apply disagree in {fld}: at x = {xv!r} ({np.dtype(dt).name}, "
                           f"step {t}) compiled gives {cv!r}, apply gives {av!r} ({int(bad.sum())} of {bad.size} "
                           f"probe inputs differ); compiled() = {op!r}")
                    return dict(field=fld, message=msg, x=xv, compiled=cv, apply=av, differ=int(bad.sum()),
                                total=int(bad.size), dtype=np.dtype(dt).name, step=t)
    return None


def check_compiled(p, x=None, seed: int = 0) -> None:
    """Raise a ValueError when ``p.compiled()`` computes something else than ``p``'s own ``apply``.

    The compiled form is evaluated with the engine's element functions (:func:`evaluate_compiled`)
    and compared, number for number (NaN equal to NaN), with ``p.transform`` on the same message,
    stream key and step, at the first active steps of its schedule, on ``x`` (default: the inputs
    of :func:`probe_inputs` for its operation) in float64 and, for rounding, bit flips and a
    researcher's element and block operations, in float32.  The message names the field that disagrees (as well as the inputs tell), one input,
    both results and the count of differing inputs.  A kind without a compiled form
    (``compiled()`` raises NotImplementedError) passes: the engine refuses it by itself.
    """
    try:
        op = p.compiled()
    except NotImplementedError:
        return None
    xs = probe_inputs(op, seed=seed) if x is None else as_input(x, "check_compiled")
    found = _compare_compiled(p, xs, seed)
    if found is not None:
        raise ValueError(found["message"])
    return None


def _z_flag(measured, expected, se, scale, z, rtol):
    """Per entry: abs(measured − expected) > z·se + rtol·scale (entries with a non-finite side are skipped)."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(measured - expected)
        tol = z * se + rtol * scale
        ok = np.isfinite(measured) & np.isfinite(expected) & np.isfinite(tol)
        return ok & (diff > tol), diff, tol


def _worst(flag, diff, tol) -> int:
    """The flagged entry farthest outside its tolerance (in tolerances)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(flag, diff / np.where(tol > 0, tol, 1e-300), -1.0).ravel()
    return int(np.argmax(r))


def _at(x, i):
    return f"x = {float(x.ravel()[i])!r} (entry {i})"


def check(p, x, *, draws: int = 2000, seed: int = 0, z: float = 6.0, rtol: float = 1e-9,
          raise_on_disagreement: bool = False) -> CheckReport:
    """Compare what ``p`` declares with what it does on the inputs ``x``; see :func:`fbsgd.perturbations.check`."""
    x = as_input(x, "check")
    draws = _draws("check", draws)
    if not (isinstance(z, (int, float)) and z > 0):
        raise ValueError(f"check: z must be a number > 0, got {z!r}")
    report = CheckReport(repr(p))
    out = report.disagreements.append

    # what it does: draws of its own apply (common random numbers)
    mc = monte_carlo(p, x, draws, seed)
    n_mc = mc.draws  # fewer than asked when the draws agree (a deterministic kind)
    scale = np.abs(x) + np.sqrt(np.abs(np.nan_to_num(mc.second_moment(), nan=0.0, posinf=0.0)))

    # its conditional law against apply
    try:
        cl = p.conditional_law(x, draws=draws, seed=seed)
    except NotImplementedError as e:
        cl = None
        report.notes.append(f"conditional_law: not given ({e})")
    measured = mc
    if cl is not None and not isinstance(cl, MonteCarloLaw) and cl.exact:
        report.notes.append(f"conditional law: {cl.how}; compared with {n_mc} draws of apply")
        bad_support = None
        if isinstance(cl, FiniteLaw):
            live = cl.probabilities > 0
            member = np.zeros(mc.samples.shape, dtype=bool)
            for k in range(cl.points.shape[-1]):
                member |= _same(mc.samples, cl.points[..., k:k + 1]) & live[..., k:k + 1]
            if not member.all():
                i = _first(~member.all(axis=-1).ravel())
                j = _first(~member.reshape(-1, n_mc)[i])
                bad_support = i
                out(Disagreement("conditional_law", f"support {cl.points.reshape(-1, cl.points.shape[-1])[i].tolist()}",
                                 float(mc.samples.reshape(-1, n_mc)[i, j]), where=_at(x, i),
                                 detail="apply gives a value outside the declared support"))
        elif isinstance(cl, UniformLaw):
            d = mc.samples - x[..., None]
            tol = rtol * (np.abs(x[..., None]) + max(abs(cl.low), abs(cl.high)))
            outside = (d < cl.low - tol) | (d > cl.high + tol)
            if outside.any():
                i = _first(outside.any(axis=-1).ravel())
                bad_support = i
                out(Disagreement("conditional_law", f"δ in [{cl.low:g}, {cl.high:g}]",
                                 f"δ = {float(d.reshape(-1, n_mc)[i][outside.reshape(-1, n_mc)[i]][0]):.6g}",
                                 where=_at(x, i), detail="apply draws outside the declared support"))
        if bad_support is None:
            var = cl.variance()
            m2, m4 = cl.second_moment(), cl.fourth_moment()
            with np.errstate(invalid="ignore", over="ignore"):
                se_mean = np.sqrt(var / n_mc)
                se_m2 = np.sqrt(np.maximum(m4 - m2 * m2, 0.0) / n_mc)
            for name, got, want, se in (("mean", mc.mean(), cl.mean(), se_mean), ("second_moment", mc.second_moment(), m2, se_m2)):
                flag, diff, tol = _z_flag(got, want, np.maximum(se, mc.mean_se() if name == "mean" else mc.second_moment_se()),
                                          scale if name == "mean" else scale**2, z, rtol)
                if flag.any():
                    i = _first(flag.ravel())
                    out(Disagreement(f"conditional_law.{name}()", float(want.ravel()[i]), float(got.ravel()[i]),
                                     float(tol.ravel()[i]), _at(x, i), f"{int(flag.sum())} of {flag.size} entries"))
        if not report.disagreements:
            measured = cl  # exact and consistent with apply: compare the declarations with the exact numbers
    elif cl is not None and not isinstance(cl, MonteCarloLaw):
        report.notes.append(f"conditional law: {cl.how} (not exact: compared through {n_mc} draws of apply only)")
    else:
        report.notes.append(f"measured by {n_mc} draws of apply")
    exact = measured is not mc
    se_mean = measured.mean_se()
    se_m2 = measured.second_moment_se()

    # the declared law
    try:
        law = p.law
    except NotImplementedError as e:
        out(Disagreement("law", "—", "—", detail=f"not described: {e}"))
        law = None
    if law is not None:
        bias, m2 = measured.bias(), measured.second_moment()
        fin = np.isfinite(bias) & np.isfinite(m2)
        if law.zero_mean:
            flag, diff, tol = _z_flag(bias, np.zeros_like(bias), se_mean, scale, z, rtol)
            if flag.any():
                i = _worst(flag, diff, tol)
                out(Disagreement("law.zero_mean", "E[δ | x] = 0", f"E[δ | x] = {float(bias.ravel()[i]):.6g}",
                                 float(tol.ravel()[i]), _at(x, i), f"{int(flag.sum())} of {flag.size} entries biased"))
        n = max(int(fin.sum()), 1)
        avg = lambda a: float(np.sum(np.where(fin, a, 0.0)) / n)  # noqa: E731
        for name, declared, got, se, sc in (("mean", law.mean, bias, se_mean, scale),
                                            ("second_moment", law.second_moment, m2, se_m2, scale**2)):
            if declared is None:
                continue
            g = avg(got)
            tol = z * avg(se) + rtol * (avg(sc) + abs(declared))
            if not abs(g - declared) <= tol:
                out(Disagreement(f"law.{name}", float(declared), g, tol, "the mean over the entries of x",
                                 f"E[δ{'²' if name == 'second_moment' else ''} | x] averaged over {n} entries"))
        if law.fourth_moment is not None:
            with np.errstate(invalid="ignore", over="ignore"):
                m4 = measured.fourth_moment()
                fin4 = np.isfinite(m4)
                se4 = np.zeros_like(m4) if exact else mc.expect_se(lambda v: (v - x[..., None]) ** 4)
            g = float(np.mean(m4[fin4])) if fin4.any() else float("nan")
            tol = (z * float(np.mean(se4[fin4])) + rtol * (abs(law.fourth_moment) + float(np.mean(scale[fin4] ** 4)))
                   if fin4.any() else 0.0)
            if not abs(g - law.fourth_moment) <= tol:
                out(Disagreement("law.fourth_moment", float(law.fourth_moment), g, tol, "the mean over the entries of x"))
        if law.additive and fin.sum() > 1:
            for name, got, se, sc in (("E[δ | x]", bias, se_mean, scale), ("E[δ² | x]", m2, se_m2, scale**2)):
                ref = avg(got)
                flag, diff, tol = _z_flag(got, np.full_like(got, ref), 2 * se, sc, z, max(rtol, 1e-12))
                flag &= fin
                if flag.any():
                    i = _first(flag.ravel())
                    out(Disagreement("law.additive", f"{name} the same for every input", float(got.ravel()[i]),
                                     float(tol.ravel()[i]), _at(x, i), f"the mean over the entries is {ref:.6g}"))
                    break
        if law.bound is not None and law.relative_bound is not None:
            limit = law.bound + law.relative_bound * np.abs(x)
            if isinstance(measured, FiniteLaw):
                live = measured.probabilities > 0
                with np.errstate(invalid="ignore"):
                    dev = np.where(live, np.abs(measured.points - x[..., None]), 0.0).max(axis=-1)
            elif isinstance(measured, UniformLaw):
                dev = np.full(x.shape, max(abs(measured.low), abs(measured.high)))
            elif isinstance(measured, GaussianLaw):
                dev = np.full(x.shape, math.inf if measured.std > 0 else abs(measured.mu))
            else:
                with np.errstate(invalid="ignore"):
                    dev = np.abs(mc.samples - x[..., None]).max(axis=-1)
            dev = np.where(np.isnan(dev), math.inf, dev)
            over = dev > limit * (1 + rtol) + 1e-300
            if over.any():
                i = int(np.argmax(np.where(over, dev - limit, -math.inf).ravel()))
                rb = f" + {law.relative_bound:g}·|x| = {float(limit.ravel()[i]):.6g}" if law.relative_bound else ""
                out(Disagreement("law.bound", f"|δ| ≤ {law.bound:g}{rb}",
                                 f"|δ| = {float(dev.ravel()[i]):.6g}", where=_at(x, i),
                                 detail=f"{int(over.sum())} of {over.size} entries exceed it"))
        if law.support is not None:
            lo, hi = law.support
            d = mc.samples - x[..., None]
            with np.errstate(invalid="ignore"):
                tol = rtol * (np.abs(x[..., None]) + max(abs(lo), abs(hi)))
                outside = ~((d >= lo - tol) & (d <= hi + tol))
            if outside.any():
                i = _first(outside.any(axis=-1).ravel())
                row = d.reshape(-1, n_mc)[i]
                out(Disagreement("law.support", f"δ in [{lo:g}, {hi:g}]",
                                 f"δ in [{float(np.nanmin(row)):.6g}, {float(np.nanmax(row)):.6g}]", where=_at(x, i),
                                 detail=f"{int(outside.sum())} of {outside.size} draws outside"))
        report.notes.append(f"law: {law.family}, additive={law.additive}, zero_mean={law.zero_mean}, mean={law.mean}, "
                            f"second_moment={law.second_moment}, bound={law.bound}, relative_bound={law.relative_bound}")

    # its schedule: where it does not act, apply leaves x as it is
    sched = p.schedule
    idle = next((t for t in range(0, 256) if not sched.active(t)), None)
    if idle is not None:
        key = rng.derive_key("fbsgd.laws.check.schedule", int(seed))
        y = _apply_at(p, x, key, idle)
        bad = ~_same(y, x) if np.shape(y) == x.shape else np.ones(x.shape, dtype=bool)
        if bad.any():
            i = _first(bad.ravel())
            out(Disagreement("schedule", f"does not act at step {idle}", f"changes {int(bad.sum())} of {bad.size} entries",
                             where=_at(x, i)))

    # its compiled form against apply, on x and on the probe inputs of its operation
    try:
        op = p.compiled()
    except NotImplementedError:
        op = None
        report.notes.append("compiled(): none (the compiled engine refuses it)")
    if op is not None:
        xs = np.concatenate([x.reshape(-1, 1), probe_inputs(op, seed=seed)]) if op.kind in ("uniform", "round", "bitflip") \
            else x.reshape(-1, 1)
        found = _compare_compiled(p, xs, seed)
        if found is not None and "x" in found:
            out(Disagreement(found["field"], f"compiled {op!r} gives {found['compiled']!r}", f"apply gives {found['apply']!r}",
                             where=f"x = {found['x']!r} ({found['dtype']}, step {found['step']})",
                             detail=f"{found['differ']} of {found['total']} inputs differ"))
        elif found is not None:
            out(Disagreement(found["field"], repr(op), "—", detail=found["message"]))
        else:
            report.notes.append(f"compiled(): {op!r} agrees with apply on {xs.shape[0]} inputs")
    if raise_on_disagreement:
        report.raise_if_any()
    return report
