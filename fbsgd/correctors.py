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
from functools import lru_cache

import numpy as np
from numba import njit

from fbsgd.perturbations import CompressorWithMemory, DeltaOp, ElementOp, Law, Perturbation

__all__ = ["DeltaCompression", "SecondOrderDebias", "UniformDebias", "sigmoid_second_derivative",
           "second_order_message", "uniform_debias_h", "uniform_debias_numbers", "second_order_element",
           "uniform_debias_element", "debias_element", "SECOND_ORDER", "UNIFORM", "TAIL_CUT", "SERIES_START"]

TAIL_CUT = 28.0  # σ'(x) < e^{−28} ≈ 7e-13 beyond |x| = 28: where the sums of (D) are cut
SERIES_START = 3.0  # the compiled h: terms of (D) with argument below −SERIES_START are summed as a power series
SECOND_ORDER, UNIFORM = 0.0, 1.0  # numbers[0] of debias_element: which de-biasing it computes


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


# -- the compiled forms: numba element functions y = fn(x, u, numbers) (fbsgd.perturbations.ElementOp) --


@njit(cache=True)
def second_order_element(x, u, numbers):
    """:func:`second_order_message` of one entry, m₂ = numbers[0] (u, the entry's draw, is not used)."""
    return x - 0.5 * numbers[0] * (x * (1.0 - x) * (1.0 - 2.0 * x))


def _sigma_prime_series(a: float, start: float) -> list[float]:
    """c_m = (−1)^{m+1} m / (1 − e^{−2am}), m = 1, 2, …: Σ_{k≥0} σ'(x − 2ka) = Σ_m c_m e^{mx} for x < 0
    (σ'(x) = Σ_m (−1)^{m+1} m e^{mx}, summed over k as geometric series), as many terms as keep the
    first one left out, times 2a, below 1e-17 wherever e^x ≤ e^{−start}."""
    out, m = [], 1
    while True:
        c = (-1) ** (m + 1) * m / -math.expm1(-2 * a * m)
        if 2 * a * abs(c) * math.exp(-start * m) < 1e-17:
            return out
        out.append(c)
        m += 1


def _periodic_coefficients(a: float) -> list[float]:
    """The Fourier coefficients 2q/sinh(q), q = π²n/a, n = 1, 2, … of :func:`_periodic_part` (the same cut)."""
    out = []
    if math.pi**2 / a > 40:
        return out
    n = 1
    while True:
        q = math.pi**2 * n / a
        if q > 700:
            return out
        c = 2 * q / math.sinh(q)
        if c < 1e-17:
            return out
        out.append(c)
        n += 1


@lru_cache(maxsize=64)
def uniform_debias_numbers(a: float) -> tuple:
    """The numbers of :func:`uniform_debias_element` for U(−a, a): (a, e^{−a}, e^{−2a}, K, H, c_1 … c_H,
    P, p_1 … p_P): K terms of (D) added one by one (enough to bring the largest, at |s| = 0, below
    e^{−SERIES_START}), H power-series coefficients of :func:`_sigma_prime_series` for the rest, and the
    P Fourier coefficients of the periodic part (:func:`_periodic_coefficients`)."""
    if not (isinstance(a, (int, float)) and math.isfinite(a) and a > 0):
        raise ValueError(f"uniform_debias_numbers needs a > 0, got {a!r}")
    a = float(a)
    direct = max(0, math.ceil((SERIES_START - a) / (2 * a)))
    series, periodic = _sigma_prime_series(a, SERIES_START), _periodic_coefficients(a)
    return (a, math.exp(-a), math.exp(-2 * a), float(direct), float(len(series)), *series,
            float(len(periodic)), *periodic)


@njit(cache=True)
def _cos_turns(t):
    """cos(2πt) for a finite t: t reduced to |f| ≤ ¼ turn (f = t − round(t), cos(2πf) = −cos(2π(½ − |f|)))
    and the Taylor series of cos to the 22nd power (error below 1e-16 on |2πf| ≤ π/2, 4e-14 at |t| = 50
    from the reduction)."""
    f = abs(t - math.floor(t + 0.5))
    sign = 1.0
    if f > 0.25:
        f = 0.5 - f
        sign = -1.0
    g = 2.0 * math.pi * f
    g2 = g * g
    r = 1.0 / 1124000727777607680000.0
    r = r * g2 - 1.0 / 6402373705728000.0
    r = r * g2 + 1.0 / 20922789888000.0
    r = r * g2 - 1.0 / 87178291200.0
    r = r * g2 + 1.0 / 479001600.0
    r = r * g2 - 1.0 / 3628800.0
    r = r * g2 + 1.0 / 40320.0
    r = r * g2 - 1.0 / 720.0
    r = r * g2 + 1.0 / 24.0
    r = r * g2 - 0.5
    return sign * (r * g2 + 1.0)


@njit(cache=True)
def uniform_debias_element(x, u, numbers):
    """h(logit v) of eq. (D) for one entry x (v = x clipped to [0, 1]), with the numbers of
    :func:`uniform_debias_numbers` (u, the entry's draw, is not used).

    With y = e^{−|s|} = min(v, 1 − v) / max(v, 1 − v) (s = logit v: no logarithm needed) the tail
    2a Σ_{k≥0} σ'(−|s| − (2k + 1)a) has terms σ'(x_k) = e_k/(1 + e_k)², e_0 = y e^{−a}, e_{k+1} = e_k e^{−2a}:
    the first K are added one by one, the rest is the power series Σ_m c_m e_K^m (two Horner chains, in
    e_K², for the even and the odd powers).  h = tail for v ≤ ½; for v > ½, h = 1 + p(s) − tail (the form
    of :func:`uniform_debias_h`), p's cosines from one cosine (:func:`_cos_turns`) by the Chebyshev recurrence."""
    if x != x:
        return x
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    a = numbers[0]
    e = min(x, 1.0 - x) / max(x, 1.0 - x) * numbers[1]
    q = numbers[2]
    total = 0.0
    for _ in range(int(numbers[3])):
        total += e / ((1.0 + e) * (1.0 + e))
        e *= q
    nh = int(numbers[4])
    e2 = e * e
    odd = 0.0  # c_1 + c_3 e² + c_5 e⁴ + …
    even = 0.0  # c_2 + c_4 e² + …
    for m in range(nh - (1 - nh % 2), 0, -2):
        odd = odd * e2 + numbers[4 + m]
    for m in range(nh - nh % 2, 0, -2):
        even = even * e2 + numbers[4 + m]
    tail = 2.0 * a * (total + e * (odd + e * even))
    if x <= 0.5:
        return tail
    n_p = int(numbers[5 + nh])
    p = 0.0
    if n_p > 0:
        c1 = _cos_turns((math.log(x / (1.0 - x)) - a) / (2.0 * a))
        prev, cur = 1.0, c1
        for n in range(1, n_p + 1):
            p += numbers[5 + nh + n] * cur
            prev, cur = cur, 2.0 * c1 * cur - prev
    return 1.0 + p - tail


@njit(cache=True)
def debias_element(x, u, numbers):
    """The compiled form of both de-biasing kinds, one numba function (so the engine compiles one kernel
    for both): numbers[0] = SECOND_ORDER → :func:`second_order_element` with numbers[1:], UNIFORM →
    :func:`uniform_debias_element` with numbers[1:]."""
    if numbers[0] == 0.0:
        return second_order_element(x, u, numbers[1:])
    return uniform_debias_element(x, u, numbers[1:])


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

    def compiled(self):
        """:func:`debias_element` with numbers (SECOND_ORDER, m₂): the compiled engine runs it in its kernel."""
        return ElementOp(debias_element, (SECOND_ORDER, float(self.second_moment)))

    def apply(self, x, key, step):
        """Entry by entry as the compiled engine computes it (:func:`second_order_message` in numba;
        a float32 message gives float32)."""
        return self.compiled().apply(x, key, step)


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

    def compiled(self):
        """:func:`debias_element` with (UNIFORM, :func:`uniform_debias_numbers` of ``a``): the compiled
        engine runs it in its kernel."""
        return ElementOp(debias_element, (UNIFORM, *uniform_debias_numbers(float(self.a))))

    def apply(self, x, key, step):
        """Entry by entry as the compiled engine computes it: v clipped to [0, 1], then h(logit v)
        (:func:`uniform_debias_element`; tested against the readable :func:`uniform_debias_h`)."""
        return self.compiled().apply(x, key, step)
