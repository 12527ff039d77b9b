"""Perturbations δ (forward) and ε (backward) as small composable objects.

In the spirit of optax's gradient transformations, a perturbation is a pure
object with explicit state:

>>> p = every(10, zero_mean_uniform(sigma=1.0, dim=10))
>>> state = p.init(key)
>>> y_tilde, state = p(y, state)       # y_tilde = y + δ, state advanced one step

The state is just ``(key, step)``: random numbers are drawn from the
counter-based stream of :mod:`fbsgd.rng`, so a perturbation's draw at step
``t`` is a pure function of its key and ``t``.  A :class:`Plan` places
perturbations in a chain: ``forward[i]`` is δ_i added to the output of
operator i (eq. 5a), ``backward[i]`` is ε_i added to the intermediate
gradient that operator i sends back (eq. 5b).

Building blocks
---------------
``UniformNoise``      additive U(low, high) noise, per sample or shared
``GaussianNoise``     additive N(mean, std²) noise, per sample or shared
``TwoPointNoise``     additive ±a with equal probability (Appendix A.1)
``Constant``          additive fixed δ (Appendix A.2)
``TopK``              compressor x -> C(x) keeping the k largest entries
``Every``             apply the inner perturbation every Δt steps only
``AtSteps``           apply the inner perturbation at listed steps only (``budget``: Q evenly spaced)
``Chain``             apply several perturbations in turn
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

import numpy as np

from . import rng

__all__ = [
    "PerturbationState",
    "Perturbation",
    "Identity",
    "UniformNoise",
    "GaussianNoise",
    "TwoPointNoise",
    "Constant",
    "TopK",
    "Every",
    "AtSteps",
    "Chain",
    "chain",
    "every",
    "at_steps",
    "budget",
    "zero_mean_uniform",
    "nonzero_mean_uniform",
    "Plan",
]


class PerturbationState(NamedTuple):
    """A perturbation's whole state: its stream key and the step counter."""

    key: int
    step: int


class Perturbation:
    """Base class: ``apply(x, key, step)`` returns the perturbed array."""

    def init(self, seed: int) -> PerturbationState:
        """Fresh state; the stream key is a hash of ``seed`` (any int or key)."""
        return PerturbationState(rng.derive_key("fbsgd.perturbation", int(seed)), 0)

    def __call__(self, x: np.ndarray, state: PerturbationState):
        out = self.apply(x, state.key, state.step)
        return out, PerturbationState(state.key, state.step + 1)

    def apply(self, x: np.ndarray, key: int, step: int) -> np.ndarray:
        raise NotImplementedError

    def active(self, step: int) -> bool:
        """Whether the perturbation acts at ``step`` (False only for gated ones)."""
        return True


def _shape(x: np.ndarray, per_sample: bool):
    """Per sample: one draw per entry.  Shared: one draw per feature, reused by all samples."""
    return x.shape if per_sample else (1,) + x.shape[1:]


@dataclass(frozen=True)
class Identity(Perturbation):
    """No perturbation."""

    def apply(self, x, key, step):
        return x


@dataclass(frozen=True)
class UniformNoise(Perturbation):
    """δ ~ U(low, high), independent per entry (``per_sample``) or shared by the batch."""

    low: float
    high: float
    per_sample: bool = True

    def __post_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.high < self.low:
            raise ValueError(f"UniformNoise needs finite low <= high, got low={self.low}, high={self.high}")

    @property
    def mean(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def second_moment(self) -> float:
        """E[δ²] of one entry."""
        return (self.low**2 + self.low * self.high + self.high**2) / 3.0

    def apply(self, x, key, step):
        return x + rng.uniform(key, step, _shape(x, self.per_sample), self.low, self.high)


def zero_mean_uniform(sigma: float, dim: int, per_sample: bool = True) -> UniformNoise:
    """U(-σ/√d, σ/√d): the zero-mean perturbation of Section 7.2.1."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    a = sigma / math.sqrt(dim)
    return UniformNoise(-a, a, per_sample)


def nonzero_mean_uniform(sigma: float, dim: int, per_sample: bool = True) -> UniformNoise:
    """U(0, σ/√d): the biased perturbation of Section 7.2.2 (mean σ/(2√d))."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return UniformNoise(0.0, sigma / math.sqrt(dim), per_sample)


@dataclass(frozen=True)
class GaussianNoise(Perturbation):
    """δ ~ N(mean, std²), independent per entry or shared by the batch."""

    std: float
    mean: float = 0.0
    per_sample: bool = True

    def __post_init__(self):
        if not self.std >= 0:
            raise ValueError(f"GaussianNoise needs std >= 0, got {self.std}")

    def apply(self, x, key, step):
        return x + self.mean + rng.normal(key, step, _shape(x, self.per_sample), self.std)


@dataclass(frozen=True)
class TwoPointNoise(Perturbation):
    """δ = ±a with equal probability (the symmetric two-point law of Appendix A.1)."""

    a: float
    per_sample: bool = True

    def apply(self, x, key, step):
        u = rng.uniform(key, step, _shape(x, self.per_sample))
        return x + np.where(u < 0.5, -self.a, self.a)


@dataclass(frozen=True)
class Constant(Perturbation):
    """δ = value at every step (Appendix A.2 uses a fixed scalar δ)."""

    value: float

    def apply(self, x, key, step):
        return x + self.value


@dataclass(frozen=True)
class TopK(Perturbation):
    """Top-K compressor: keep the k entries of largest magnitude in each sample.

    Ties are broken towards the lower index, so the compressor is deterministic.
    The induced perturbation is δ = C(x) - x.
    """

    k: int

    def __post_init__(self):
        if int(self.k) != self.k or self.k < 1:
            raise ValueError(f"TopK needs an integer k >= 1, got {self.k}")

    def apply(self, x, key, step):
        if self.k >= x.shape[1]:
            return x
        order = np.argsort(-np.abs(x), axis=1, kind="stable")[:, : self.k]
        out = np.zeros_like(x)
        np.put_along_axis(out, order, np.take_along_axis(x, order, axis=1), axis=1)
        return out


@dataclass(frozen=True)
class Every(Perturbation):
    """Intermittent perturbation: ``inner`` acts only when step % interval == offset."""

    interval: int
    inner: Perturbation
    offset: int = 0

    def __post_init__(self):
        if int(self.interval) != self.interval or self.interval < 1:
            raise ValueError(f"Every needs an integer interval >= 1, got {self.interval}")
        if not 0 <= self.offset < self.interval:
            raise ValueError(f"Every needs 0 <= offset < interval, got offset={self.offset}")

    def active(self, step):
        return step % self.interval == self.offset

    def apply(self, x, key, step):
        return self.inner.apply(x, key, step) if self.active(step) else x


@dataclass(frozen=True)
class AtSteps(Perturbation):
    """``inner`` acts exactly at the listed steps (a perturbation budget, Section 6.2)."""

    steps: frozenset
    inner: Perturbation

    def __init__(self, steps, inner):
        object.__setattr__(self, "steps", frozenset(int(s) for s in steps))
        object.__setattr__(self, "inner", inner)
        if any(s < 0 for s in self.steps):
            raise ValueError("AtSteps needs non-negative steps")

    def active(self, step):
        return step in self.steps

    def apply(self, x, key, step):
        return self.inner.apply(x, key, step) if self.active(step) else x


@dataclass(frozen=True)
class Chain(Perturbation):
    """Apply perturbations in turn; each gets its own sub-stream of the key."""

    parts: tuple = field(default_factory=tuple)

    def apply(self, x, key, step):
        for j, p in enumerate(self.parts):
            x = p.apply(x, rng.fold_key(key, j), step)
        return x


def chain(*parts: Perturbation) -> Chain:
    return Chain(tuple(parts))


def every(interval: int, inner: Perturbation, offset: int = 0) -> Every:
    return Every(interval, inner, offset)


def at_steps(steps, inner: Perturbation) -> AtSteps:
    return AtSteps(steps, inner)


def budget(Q: int, T: int, inner: Perturbation, start: int = 0) -> AtSteps:
    """Exactly Q occurrences of ``inner``, evenly spaced over the iterations start..T−1
    (every ⌊(T − start)/Q⌋ iterations, the first at ``start``): a budget Q_δ or Q_ε of Section 6.2."""
    if int(Q) != Q or Q < 0:
        raise ValueError(f"budget needs an integer Q >= 0, got {Q}")
    if int(T) != T or T < 1 or not 0 <= start < T:
        raise ValueError(f"budget needs T >= 1 and 0 <= start < T, got T={T}, start={start}")
    if Q > T - start:
        raise ValueError(f"budget Q = {Q} exceeds the {T - start} iterations available")
    if Q == 0:
        return AtSteps([], inner)
    gap = (T - start) // Q
    return AtSteps(range(start, start + Q * gap, gap), inner)


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

    def validate(self, n_operators: int) -> None:
        for i in self.forward:
            if not 1 <= i <= n_operators:
                raise ValueError(f"forward perturbation at operator {i}: allowed 1..{n_operators}")
        for i in self.backward:
            if not 2 <= i <= n_operators:
                raise ValueError(f"backward perturbation at operator {i}: allowed 2..{n_operators}")

    def init(self, seed: int) -> dict:
        state = {}
        for where, perts in (("forward", self.forward), ("backward", self.backward)):
            for i, p in perts.items():
                state[(where, i)] = p.init(rng.derive_key("fbsgd.plan", seed, where, i))
        return state

    def perturb(self, where: str, i: int, x: np.ndarray, state: dict):
        """Apply the perturbation placed at (where, i), if any; return (x̃, state)."""
        p = (self.forward if where == "forward" else self.backward).get(i)
        if p is None:
            return x, state
        x, s = p(x, state[(where, i)])
        return x, {**state, (where, i): s}
