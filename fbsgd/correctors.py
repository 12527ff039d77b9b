"""Correctors of perturbed passes: the two remedies Section 8 of {cite}`kong2026perturbed` asks about.

Each corrector is a :class:`~fbsgd.perturbations.Perturbation` kind, so a
:class:`~fbsgd.perturbations.Plan` places it like any other perturbation.

Compression with memory (Section 8, first open question)
    :class:`DeltaCompression`   send C(x_t − r_t), the change of the message since
                                the receiver's copy r_t; the receiver keeps
                                r_{t+1} = r_t + C(x_t − r_t) and uses it as the
                                message (as AQ-SGD does for activations).  The
                                copy is the perturbation's memory, so
                                r_T = Σ_t (sent deltas) exactly.
    (error feedback, e ← x + e − C(x + e), is :class:`fbsgd.perturbations.ErrorFeedback`.)

Forward de-biasing (Section 8, second open question)
    In the logistic chain of Section 7 the backward message after f₂ is
    v = σ(z̃), z̃ = z + δ.  Zero-mean δ still biases it: E σ(z + δ) ≠ σ(z)
    (the mechanism of Theorem 2 and Appendix A.1).  A de-biasing kind is a
    transformation g of that message, placed at ``backward[2]``, with E g(σ(z + δ)) ≈ σ(z):

    :class:`SecondOrderDebias`  g(v) = v − ½ E[δ²] σ''(z̃), with σ'' written from v
                                itself: σ'' = v(1 − v)(1 − 2v); removes the O(E δ²) bias.
    :class:`UniformDebias`      for δ ~ U(−a, a), g(v) = h(logit v) with
                                h(s) = 2a Σ_{k≥0} σ'(s − (2k + 1)a)   (eq. D below),
                                for which E h(z + δ) = σ(z) for every z.

Why (D) is exact: E h(z + δ) = (1/2a) ∫_{z−a}^{z+a} h; its z-derivative is
(h(z + a) − h(z − a))/(2a), and by (D) h(s) − h(s − 2a) = 2a σ'(s − a) (the sum
telescopes), so the derivative is σ'(z).  Hence E h(z + δ) − σ(z) is constant in
z; both terms tend to 0 as z → −∞, so the constant is 0.  The sum is cut where
its terms fall below e^{−28} (:data:`TAIL_CUT`); the neglected tail is below
2a·e^{−28}/(1 − e^{−2a}) (2e-12 for a ≥ 0.1): "exact" means exact up to that.  (D) is one solution among
many (adding any 2a-periodic function of mean zero keeps E h(z + δ) = σ(z)); it
is the one that vanishes at −∞.  For small a, h(s) = σ(s) − (a²/6)σ''(s) + O(a⁴):
the midpoint rule for σ(s) = ∫_{−∞}^s σ', whose first correction is the
second-order de-biasing above (E δ² = a²/3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from fbsgd.perturbations import CompressorWithMemory, DeltaOp, Law, Perturbation

__all__ = ["DeltaCompression", "SecondOrderDebias", "UniformDebias", "sigmoid_second_derivative",
           "second_order_message", "uniform_debias_h", "TAIL_CUT"]

TAIL_CUT = 28.0  # σ'(x) < e^{−28} ≈ 7e-13 beyond |x| = 28: where the sums of (D) are cut


# ---------------------------------------------------------------------------
# delta-based compression (the receiver keeps a copy)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeltaCompression(CompressorWithMemory):
    """Compress the change of a message and keep the receiver's copy.

    At each step: sent = C(x − r), r ← r + sent, output r (the receiver's copy,
    zero at the start).  Σ_t sent_t = r_T exactly, and the error of the message
    is r − x = −(I − C)(x − r_prev): the compressor acts on the change of x only,
    so the error shrinks with the change (it vanishes when x stops moving and C
    is contractive).  A non-contractive compressor (scaled Rand-K, n/k > 2)
    amplifies the error instead.
    """

    compressor: Perturbation

    def sent(self, x, key, step, memory):
        """(the compressed delta that is sent, the receiver's new copy)."""
        x, r = self.prepare(x, memory)
        delta = self.compress_fn(key, step)(x - r)
        return delta, r + delta

    def compiled(self):
        return DeltaOp.around(self)

    def update(self, x, r, compress):
        copy = r + compress(x - r)
        return copy, copy


# ---------------------------------------------------------------------------
# forward de-biasing, as transformations of the backward message v = σ(z̃)
# ---------------------------------------------------------------------------


def sigmoid_second_derivative(v):
    """σ''(z) written from v = σ(z): σ'' = v(1 − v)(1 − 2v)."""
    v = np.asarray(v, dtype=float)
    return v * (1.0 - v) * (1.0 - 2.0 * v)


def second_order_message(v, second_moment: float):
    """v − ½ E[δ²] σ''(z̃): the message with the second-order bias of E σ(z + δ) removed."""
    return np.asarray(v, dtype=float) - 0.5 * second_moment * sigmoid_second_derivative(v)


def _periodic_part(s, a: float):
    """p(s) = 2a Σ_{k∈ℤ} σ'(s − (2k + 1)a) − 1 = 2 Σ_{n≥1} (π²n/a)/sinh(π²n/a) · cos(πn(s − a)/a)
    (Poisson summation; the Fourier transform of σ' is πω/sinh(πω)).  Terms below 1e-17 are dropped."""
    out = np.zeros_like(s)
    if math.pi**2 / a > 40:  # the first term is below 1e-15: p vanishes in float64
        return out
    n = 1
    while True:
        q = math.pi**2 * n / a
        if q > 700:
            break
        c = 2 * q / math.sinh(q)
        if c < 1e-17:  # negligible next to h's values in [0, 1]
            break
        out += c * np.cos(math.pi * n * (s - a) / a)
        n += 1
    return out


def uniform_debias_h(s, a: float):
    """h(s) = 2a Σ_{k≥0} σ'(s − (2k + 1)a) of eq. (D): E h(z + δ) = σ(z) for δ ~ U(−a, a).

    For s ≤ 0 the sum is evaluated as written; for s > 0 through the equivalent
    h(s) = 1 + p(s) − 2a Σ_{k≥1} σ'(s + (2k − 1)a) (p of :func:`_periodic_part`), so
    both need only the terms within TAIL_CUT of the origin.  Dropped terms: each
    below e^{−TAIL_CUT}, in all below 2a·e^{−TAIL_CUT}/(1 − e^{−2a}) (2e-12 for a ≥ 0.1).
    s = ±inf (a saturated message) gives 0 or 1, the mean of h over a period there."""
    if not a > 0:
        raise ValueError(f"uniform_debias_h needs a > 0, got {a!r}")
    s = np.asarray(s, dtype=float)
    K = int(math.ceil(TAIL_CUT / (2 * a))) + 1
    # both forms sum σ'(−|s| − (2k + 1)a), k = 0..K−1 (σ' is even)
    # e^{x_k} = e^{−|s|−a}·(e^{−2a})^k with x_k = −|s| − (2k + 1)a < 0, and σ'(x) = eˣ/(1 + eˣ)²
    e = np.exp(-np.abs(s) - a)[..., None] * np.exp(-2 * a * np.arange(K))
    tail = 2 * a * np.sum(e / (1.0 + e) ** 2, axis=-1)
    neg = s <= 0
    inf = np.isinf(s)
    p = _periodic_part(np.where(inf, a, s), a)
    return np.where(inf, (s > 0).astype(float), np.where(neg, tail, 1.0 + p - tail))


@dataclass(frozen=True)
class SecondOrderDebias(Perturbation):
    """Backward-place transformation v ↦ v − ½ m₂ v(1 − v)(1 − 2v), m₂ = E[δ²] of the forward noise.

    :meth:`for_noise` reads m₂ off a forward perturbation's law."""

    second_moment: float

    @classmethod
    def for_noise(cls, p: Perturbation) -> "SecondOrderDebias":
        law = p.law
        if not law.zero_mean or law.second_moment is None:
            raise ValueError(f"SecondOrderDebias needs zero-mean forward noise with a known E[δ²], got {p!r}")
        return cls(law.second_moment)

    @property
    def law(self):
        return Law("input_dependent", False, False, bound=0.0, relative_bound=0.5 * self.second_moment)

    def apply(self, x, key, step):
        return second_order_message(x, self.second_moment)


@dataclass(frozen=True)
class UniformDebias(Perturbation):
    """Backward-place transformation v ↦ h(logit v) with h of eq. (D), exact for δ ~ U(−a, a)."""

    a: float

    def __post_init__(self):
        if not (isinstance(self.a, (int, float)) and math.isfinite(self.a) and self.a > 0):
            raise ValueError(f"UniformDebias needs a > 0, got {self.a!r}")

    @classmethod
    def for_noise(cls, p: Perturbation) -> "UniformDebias":
        law = getattr(p, "law", None)
        if law is None or law.family != "uniform" or law.support[0] != -law.support[1] or law.support[1] <= 0:
            raise ValueError(f"UniformDebias needs zero-mean uniform noise U(−a, a), got {p!r}")
        return cls(law.support[1])

    @property
    def law(self):
        return Law("input_dependent", False, False)

    def apply(self, x, key, step):
        v = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
        with np.errstate(divide="ignore"):
            return uniform_debias_h(logit(v), self.a)
