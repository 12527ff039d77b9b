"""The constants and right-hand sides of Section 4 (Lemma 1, Theorems 1 and 2).

Assumption 3 gives every operator the same five constants

==============  ==============================================================
``C_grad``      C_∇f : bound on ‖∇₁f_i‖_op and ‖∇₂f_i‖_op
``C_hess``      C_∇²f: bound on the second derivatives in y (∇²₂₁f_i, ∇²₁₁f_i)
``L_f``         L_f  : Lipschitz constant of f_i in y
``L_grad``      L_∇f : Lipschitz constant in y of ∇₁f_i and ∇₂f_i
``L_hess``      L_∇²f: Lipschitz constant in y of the second derivatives
==============  ==============================================================

and the paper turns them into depth-dependent coefficients:

* :func:`c_v`            Lemma 1:  C_v = max{1, C_∇f^N};
* :func:`c_e_delta`      (21):     C^e_{δ_i};
* :func:`c_e_eps`        (21):     C^e_{ε_{i+1}};
* :func:`c_y_sq`         the C²_{y_i} defined just before (33);
* :func:`c_b_delta`      (33a):    C^b_{δ_i};
* :func:`c_b_eps`        (33b):    C^b_{ε_{i+1}};
* :func:`c_tilde_b_delta` (33b):   C̃^b_{δ_i};
* :func:`mse_bound`      the right-hand side of (13);
* :func:`bias_bound`     the right-hand side of (23);
* :func:`conditional_moments`, :func:`bounds_given_inputs`  the moments of (13) and the bias terms
  of (23) from a perturbation's law *given its input* (any mechanism: rounding, compression, bit
  flips), instead of declared moments.

Indices follow the paper: forward perturbations δ_i sit at i = 1..N−1,
backward perturbations ε_k at k = 2..N (the paper writes ε_{i+1}; the
functions here take the index k = i+1 of ε itself).

Two places where the printed constants differ from what their own proof
derives; ``variant="printed"`` (the default) uses the printed formula,
``variant="derivation"`` the one the proof's last displayed inequality gives:

* (21): the proof's (19) carries the backward coefficient
  2·Σ_{j=1}^{i}(3C²_∇f)^j, but (20)–(21) drop the factor 2.
* (33a): the proof's (32) has C²_∇²f in front, the printed (33a) has L²_∇²f.

The second half of the module estimates operator constants, exactly for
linear layers and on the visited region for elementwise activations (see
:func:`chain_constants`).  The proof applies every Jacobian-type constant
to a vector (``‖A v‖ ≤ ‖A‖_op ‖v‖``), so operator norms suffice; Assumption 3
states some Lipschitz constants in the Frobenius norm, which for a linear
layer of output width d multiplies L_∇f and C_∇²f by √d (``norm="frobenius"``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from fbsgd import laws
from fbsgd import operators as O
from fbsgd import perturbations as pert

__all__ = [
    "Constants",
    "geometric_sum",
    "c_v",
    "c_e_delta",
    "c_e_eps",
    "c_y_sq",
    "c_b_delta",
    "c_b_eps",
    "c_tilde_b_delta",
    "mse_bound",
    "bias_bound",
    "Moments",
    "perturbation_moments",
    "conditional_moments",
    "bounds_given_inputs",
    "linear_constants",
    "elementwise_constants",
    "operator_constants",
    "chain_constants",
    "VARIANTS",
]

VARIANTS = ("printed", "derivation")


@dataclass(frozen=True)
class Constants:
    """The five operator constants of Assumption 3 (one set for the whole chain)."""

    C_grad: float
    C_hess: float
    L_f: float
    L_grad: float
    L_hess: float

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"constant {f.name} must be finite and >= 0, got {v}")

    def max(self, other: "Constants") -> "Constants":
        """Entrywise maximum: constants valid for both operators."""
        return Constants(*(max(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)))

    @staticmethod
    def uniform(per_operator: Sequence["Constants"]) -> "Constants":
        """One set of constants valid for every operator (Assumption 3 uses one set)."""
        out = per_operator[0]
        for c in per_operator[1:]:
            out = out.max(c)
        return out


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def _check_depth(N: int) -> None:
    if int(N) != N or N < 2:
        raise ValueError(f"the chain needs N >= 2 operators, got {N}")


def geometric_sum(q: float, lo: int, hi: int) -> float:
    """Σ_{k=lo}^{hi} q^k (0 when hi < lo)."""
    return float(sum(q**k for k in range(lo, hi + 1)))


def c_v(C_grad: float, N: int) -> float:
    """Lemma 1: C_v = max{1, C_∇f^N}, a bound on every ‖v_i‖ (eq. 12)."""
    return max(1.0, C_grad**N)


def c_e_delta(i: int, N: int, k: Constants) -> float:
    """(21): C^e_{δ_i} = 4 C_v² L²_∇f Σ_{j=i}^{N−1} [Σ_{m=0}^{j} (3C²_∇f)^m] (2L_f²)^{j−i}."""
    _check_depth(N)
    if not 1 <= i <= N - 1:
        raise ValueError(f"C^e_delta_i needs 1 <= i <= N-1 = {N - 1}, got {i}")
    q = 3 * k.C_grad**2
    s = sum(geometric_sum(q, 0, j) * (2 * k.L_f**2) ** (j - i) for j in range(i, N))
    return 4 * c_v(k.C_grad, N) ** 2 * k.L_grad**2 * s


def c_e_eps(kk: int, N: int, k: Constants, variant: str = "printed") -> float:
    """(21): C^e_{ε_{i+1}} = Σ_{j=1}^{i} (3C²_∇f)^j for ε at kk = i+1 in 2..N.

    ``variant="derivation"`` doubles it, as the proof's (19) has it.
    """
    _check_depth(N)
    _check_variant(variant)
    if not 2 <= kk <= N:
        raise ValueError(f"C^e_eps_k needs 2 <= k <= N = {N}, got {kk}")
    i = kk - 1
    s = geometric_sum(3 * k.C_grad**2, 1, i)
    return (2 * s) if variant == "derivation" else s


def c_y_sq(i: int, N: int, k: Constants) -> float:
    """C²_{y_i} (defined before (33)), the coefficient of E‖ỹ_i − y_i‖⁴ in the bias bound:

    8 C²_∇²f L²_∇f C_v² Σ_{j=i+1}^{N−1} [Σ_{m=0}^{j} (3C²_∇f)^m] (4C²_∇f)^{j−i−1}
    + 2 L²_∇²f C_v² Σ_{j=0}^{i} (3C²_∇f)^j.
    """
    _check_depth(N)
    if not 1 <= i <= N - 1:
        raise ValueError(f"C_y_i needs 1 <= i <= N-1 = {N - 1}, got {i}")
    q = 3 * k.C_grad**2
    cv2 = c_v(k.C_grad, N) ** 2
    first = sum(geometric_sum(q, 0, j) * (4 * k.C_grad**2) ** (j - i - 1) for j in range(i + 1, N))
    return 8 * k.C_hess**2 * k.L_grad**2 * cv2 * first + 2 * k.L_hess**2 * cv2 * geometric_sum(q, 0, i)


def c_b_delta(i: int, N: int, k: Constants, variant: str = "printed") -> float:
    """(33a): C^b_{δ_i} = 8 L²_∇²f C_v² Σ_{j=i}^{N−1} [Σ_{m=0}^{j} (3C²_∇f)^m] (4C²_∇f)^{j−i}.

    ``variant="derivation"`` replaces L²_∇²f by C²_∇²f, as the proof's (32) has it.
    """
    _check_depth(N)
    _check_variant(variant)
    if not 1 <= i <= N - 1:
        raise ValueError(f"C^b_delta_i needs 1 <= i <= N-1 = {N - 1}, got {i}")
    q = 3 * k.C_grad**2
    s = sum(geometric_sum(q, 0, j) * (4 * k.C_grad**2) ** (j - i) for j in range(i, N))
    front = k.C_hess if variant == "derivation" else k.L_hess
    return 8 * front**2 * c_v(k.C_grad, N) ** 2 * s


def c_b_eps(kk: int, N: int, k: Constants) -> float:
    """(33b): C^b_{ε_{i+1}} = 2 Σ_{j=1}^{i} (3C²_∇f)^j for ε at kk = i+1 in 2..N."""
    _check_depth(N)
    if not 2 <= kk <= N:
        raise ValueError(f"C^b_eps_k needs 2 <= k <= N = {N}, got {kk}")
    return 2 * geometric_sum(3 * k.C_grad**2, 1, kk - 1)


def c_tilde_b_delta(i: int, N: int, k: Constants) -> float:
    """(33b): C̃^b_{δ_i} = 8 Σ_{j=i}^{N−1} C²_{y_j} (8L_f⁴)^{j−i}, the coefficient of E‖δ_i‖⁴."""
    _check_depth(N)
    if not 1 <= i <= N - 1:
        raise ValueError(f"C~^b_delta_i needs 1 <= i <= N-1 = {N - 1}, got {i}")
    return 8 * sum(c_y_sq(j, N, k) * (8 * k.L_f**4) ** (j - i) for j in range(i, N))


def _moments_arg(name: str, values) -> dict:
    """``values`` (a mapping from location to a moment, or None) with every moment a finite number >= 0,
    or a ValueError naming the argument and the location: a moment of a norm is never negative."""
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{name} must be a mapping from location to a moment (a finite number >= 0), "
                         f"got {type(values).__name__}")
    for where, m in values.items():
        if isinstance(m, bool) or not isinstance(m, (int, float, np.integer, np.floating)) or not (math.isfinite(m) and m >= 0):
            raise ValueError(f"{name}[{where!r}] must be a finite number >= 0 (a moment of a norm), got {m!r}")
    return dict(values)


def mse_bound(N: int, k: Constants, delta_sq: Mapping[int, float] | None = None,
              eps_sq: Mapping[int, float] | None = None, variant: str = "printed") -> float:
    """Right-hand side of (13): Σ_i C^e_{δ_i} E‖δ_i‖² + Σ_k C^e_{ε_k} E‖ε_k‖².

    ``delta_sq[i]`` = E‖δ_i‖² (i = 1..N−1), ``eps_sq[k]`` = E‖ε_k‖² (k = 2..N);
    locations not given carry no perturbation.  A moment that is negative or not finite is
    refused (ValueError naming it).
    """
    delta_sq, eps_sq = _moments_arg("delta_sq", delta_sq), _moments_arg("eps_sq", eps_sq)
    total = sum(c_e_delta(i, N, k) * m for i, m in delta_sq.items())
    total += sum(c_e_eps(kk, N, k, variant) * m for kk, m in eps_sq.items())
    return float(total)


def bias_bound(N: int, k: Constants, delta_mean_sq: Mapping[int, float] | None = None,
               delta_fourth: Mapping[int, float] | None = None,
               eps_mean_sq: Mapping[int, float] | None = None, variant: str = "printed") -> float:
    """Right-hand side of (23):
    Σ_i C^b_{δ_i} ‖Eδ_i‖² + Σ_i C̃^b_{δ_i} E‖δ_i‖⁴ + Σ_k C^b_{ε_k} ‖Eε_k‖².

    (For perturbations drawn independently of the pass, the conditional means
    of (23) are the plain means; for any other, :func:`bounds_given_inputs`.)  A moment that is
    negative or not finite is refused (ValueError naming it).
    """
    delta_mean_sq = _moments_arg("delta_mean_sq", delta_mean_sq)
    delta_fourth = _moments_arg("delta_fourth", delta_fourth)
    eps_mean_sq = _moments_arg("eps_mean_sq", eps_mean_sq)
    total = sum(c_b_delta(i, N, k, variant) * m for i, m in delta_mean_sq.items())
    total += sum(c_tilde_b_delta(i, N, k) * m for i, m in delta_fourth.items())
    total += sum(c_b_eps(kk, N, k) * m for kk, m in eps_mean_sq.items())
    return float(total)


# ---------------------------------------------------------------------------
# Moments of a perturbation
# ---------------------------------------------------------------------------

class Moments(NamedTuple):
    """‖Eδ‖², E‖δ‖² and E‖δ‖⁴ of a perturbation added to a d-vector."""

    mean_sq: float
    second: float
    fourth: float


def _iid_moments(d: int, m1: float, m2: float, m4: float) -> Moments:
    """A vector of d i.i.d. entries with E δ = m1, E δ² = m2, E δ⁴ = m4:
    E‖δ‖⁴ = E(Σ δ_k²)² = d m4 + d(d−1) m2²."""
    return Moments(d * m1**2, d * m2, d * m4 + d * (d - 1) * m2**2)


def perturbation_moments(p: pert.Perturbation, dim: int) -> Moments:
    """Exact moments of an additive perturbation on a ``dim``-vector, read off its law.

    ``p.law`` gives the mean, second and fourth moment of one entry; the
    entries of an additive per-sample law are independent, so the moments of
    the vector follow (:func:`_iid_moments`).  This covers ``UniformNoise``,
    ``GaussianNoise``, ``TwoPointNoise``, ``Identity`` and any wrapper of them
    (``Every``, ``AtSteps``, a one-part ``Chain``): the moments are those of δ
    at a step where the perturbation acts.  A constant law (``Constant``,
    scalar or vector value) is deterministic: ‖δ‖² = ‖value‖².

    A law without the three moments (input-dependent kinds, sums of several
    parts) raises NotImplementedError; a law shared by the batch
    (``per_sample=False``) raises ValueError.
    """
    try:
        law = p.law
    except NotImplementedError as e:
        raise NotImplementedError(f"no closed-form moments for {type(p).__name__}: {e}") from None
    if not law.additive:
        raise NotImplementedError(f"no closed-form moments for {type(p).__name__}: its law depends on the input")
    if law.family == "constant":
        if law.mean is not None:
            value = law.mean
        else:  # a vector value: the law carries no moments, the object carries the vector
            value = getattr(p, "value", None)
            if value is None:
                raise NotImplementedError(f"no closed-form moments for {type(p).__name__}: "
                                          "its constant law gives neither a scalar mean nor a value")
        v = np.broadcast_to(np.asarray(value, dtype=float), (dim,))
        n2 = float(v @ v)
        return Moments(n2, n2, n2**2)
    if law.mean is None or law.second_moment is None or law.fourth_moment is None:
        raise NotImplementedError(f"no closed-form moments for {type(p).__name__}: its law ({law.family}) "
                                  "does not give the mean, second and fourth moments")
    if not law.per_sample:
        raise ValueError("moments per sample need a per_sample perturbation")
    return _iid_moments(dim, law.mean, law.second_moment, law.fourth_moment)


def conditional_moments(p: pert.Perturbation, x, *, draws: int = laws.DEFAULT_DRAWS, seed: int = 0) -> Moments:
    """‖E[δ | x]‖², E[‖δ‖² | x] and E[‖δ‖⁴ | x] of δ = P(x) − x on the message ``x`` (one vector: all its
    entries), from the perturbation's law given its input (:meth:`fbsgd.perturbations.Perturbation.conditional_law`).

    These are the quantities (13) and (23) ask for at a step where the perturbation acts, conditioned
    on the pass (Theorem 2's bias term is the conditional bias ‖E[δ | F]‖²): exact for a finite support
    (rounding, Top-K, bit flips of a narrow field) and for additive noise; for entries that are not
    independent given x (Rand-K, noise shared by the batch, a kind known only by its ``apply``) the
    joint moments come from ``draws`` Monte Carlo calls of the kind (``seed`` names the draws).
    A non-finite result (a bit flip to inf or NaN) is refused with a ValueError naming it.
    """
    law = p.conditional_law(x, draws=draws, seed=seed)
    try:
        m = law.norm_moments()
    except NotImplementedError:
        m = laws.monte_carlo(p, x, draws, seed).norm_moments()
    m = Moments(*(float(v) for v in m))
    if not all(math.isfinite(v) for v in m):
        raise ValueError(f"conditional_moments: the moments of {p!r} at these inputs are not finite ({m}); "
                         "its outputs reach inf or NaN (bit flips in the exponent, overflow)")
    return m


def bounds_given_inputs(N: int, k: Constants, forward: Mapping | None = None, backward: Mapping | None = None,
                        variant: str = "printed", *, draws: int = laws.DEFAULT_DRAWS, seed: int = 0) -> dict:
    """The right-hand sides of (13) and (23) from the perturbations' laws given their inputs.

    ``forward[i] = (p, y_i)``: the perturbation δ_i after operator i (1..N−1) and the message y_i it
    acts on; ``backward[k] = (p, v)``: ε_k (k = 2..N) and the message it acts on.  Returns
    ``dict(mse=(13), bias=(23), moments={("forward", i): Moments, ("backward", k): Moments})`` with
    the moments of :func:`conditional_moments` in place of declared ones: E‖δ_i‖² and E‖ε_k‖² in (13),
    ‖E[δ_i | y]‖², E‖δ_i‖⁴ and ‖E[ε_k | v]‖² in (23).
    """
    moments = {}
    for where, placed in (("forward", forward or {}), ("backward", backward or {})):
        if not isinstance(placed, Mapping):
            raise ValueError(f"bounds_given_inputs: {where} must be a mapping from location to (perturbation, inputs), "
                             f"got {type(placed).__name__}")
        for i, pair in placed.items():
            if not (isinstance(pair, tuple) and len(pair) == 2 and callable(getattr(pair[0], "conditional_law", None))):
                raise ValueError(f"bounds_given_inputs: {where}[{i!r}] must be (perturbation, inputs), got {pair!r}")
    for where, placed in (("forward", forward or {}), ("backward", backward or {})):
        for i, (p, x) in placed.items():
            moments[(where, i)] = conditional_moments(p, x, draws=draws, seed=seed)
    fwd = {i: m for (w, i), m in moments.items() if w == "forward"}
    bwd = {i: m for (w, i), m in moments.items() if w == "backward"}
    mse = mse_bound(N, k, {i: m.second for i, m in fwd.items()}, {i: m.second for i, m in bwd.items()}, variant)
    bias = bias_bound(N, k, {i: m.mean_sq for i, m in fwd.items()}, {i: m.fourth for i, m in fwd.items()},
                      {i: m.mean_sq for i, m in bwd.items()}, variant)
    return dict(mse=mse, bias=bias, moments=moments)


# ---------------------------------------------------------------------------
# Operator constants
# ---------------------------------------------------------------------------

def linear_constants(W: np.ndarray, input_norm_max: float, norm: str = "op") -> Constants:
    """Constants of f(y, W) = W y on inputs with ‖y‖ ≤ ``input_norm_max``.

    * ∇₁f = W, so ‖∇₁f‖_op = ‖W‖_op and L_f = ‖W‖_op (exact, global);
    * ∇₂f(y) = I ⊗ yᵀ (the map dW ↦ dW y) has ‖∇₂f‖_op = ‖y‖: it is bounded
      only on a bounded set of inputs, hence ``input_norm_max``;
      C_∇f = max(‖W‖_op, input_norm_max);
    * ∇₁f is constant and ∇₂f is linear in y: ‖∇₂f(y) − ∇₂f(y')‖ = c‖y − y'‖
      with c = 1 in the operator norm and c = √d_out in the Frobenius norm;
      this c is both L_∇f and C_∇²f (the constant tensor ∇²₂₁f applied to a
      vector h gives I ⊗ hᵀ);
    * the second derivatives are constant: L_∇²f = 0.
    """
    if norm not in ("op", "frobenius"):
        raise ValueError(f"norm must be 'op' or 'frobenius', got {norm!r}")
    W = np.atleast_2d(np.asarray(W, dtype=float))
    w_op = float(np.linalg.norm(W, 2))
    c = 1.0 if norm == "op" else math.sqrt(W.shape[0])
    return Constants(C_grad=max(w_op, float(input_norm_max)), C_hess=c, L_f=w_op, L_grad=c, L_hess=0.0)


def _derivatives(kind: str, y: np.ndarray):
    """|g'|, |g''|, |g'''| of an elementwise activation at the points y."""
    if kind == "tanh":
        t = np.tanh(y)
        d1 = 1 - t**2
        return np.abs(d1), np.abs(-2 * t * d1), np.abs(-2 * d1 * (1 - 3 * t**2))
    if kind == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-y))
        d1 = s * (1 - s)
        return np.abs(d1), np.abs(d1 * (1 - 2 * s)), np.abs(d1 * (1 - 6 * s + 6 * s**2))
    if kind == "softplus":
        s = 1.0 / (1.0 + np.exp(-y))
        d1 = s * (1 - s)
        return np.abs(s), np.abs(d1), np.abs(d1 * (1 - 2 * s))
    raise ValueError(f"unknown activation {kind!r}")


def elementwise_constants(kind: str, lo, hi, grid: int = 2001) -> Constants:
    """Constants of an elementwise activation g on the box Π_k [lo_k, hi_k].

    For y ↦ g(y) coordinatewise, ∇₁f = diag g'(y), so on the box
    C_∇f = L_f = max|g'|, L_∇f = C_∇²f = max|g''| and L_∇²f = max|g'''|
    (the same in the operator and the Frobenius norm).  The maxima are taken
    over ``grid`` points of each coordinate interval plus the interval ends;
    the box contains every segment between visited points, on which the
    mean-value arguments of the proofs evaluate the derivatives.
    """
    lo, hi = np.atleast_1d(np.asarray(lo, dtype=float)), np.atleast_1d(np.asarray(hi, dtype=float))
    t = np.linspace(0.0, 1.0, grid)
    pts = lo[:, None] + (hi - lo)[:, None] * t[None, :]
    d1, d2, d3 = (float(a.max()) for a in _derivatives(kind, pts))
    # the global maximisers (0 for |g'''| of tanh, ...) are caught by the grid only if
    # they are grid points: add them explicitly when they fall in an interval
    special = {"tanh": [0.0, math.atanh(1 / math.sqrt(3)), -math.atanh(1 / math.sqrt(3)),
                        math.atanh(math.sqrt(2 / 3)), -math.atanh(math.sqrt(2 / 3))],
               "sigmoid": [0.0, math.log(2 + math.sqrt(3)), -math.log(2 + math.sqrt(3))],
               "softplus": [0.0, math.log(2 + math.sqrt(3)), -math.log(2 + math.sqrt(3))]}[kind]
    for s in special:
        if np.any((lo <= s) & (s <= hi)):
            e1, e2, e3 = (float(a.max()) for a in _derivatives(kind, np.array([s])))
            d1, d2, d3 = max(d1, e1), max(d2, e2), max(d3, e3)
    return Constants(C_grad=d1, C_hess=d2, L_f=d1, L_grad=d2, L_hess=d3)


_ELEMENTWISE = {O.Tanh: "tanh", O.Sigmoid: "sigmoid", O.Softplus: "softplus"}


def operator_constants(op: O.Operator, w_i: np.ndarray, input_norm_max: float, lo, hi, norm: str = "op") -> Constants:
    """Constants of one operator on the region its inputs visit.

    ``input_norm_max`` bounds ‖ỹ_{i−1}‖ and ``lo``/``hi`` give the coordinatewise
    range of ỹ_{i−1} (see ``propagation.VisitedRegion``).
    """
    if isinstance(op, O.Linear):
        return linear_constants(w_i.reshape(op.out_dim, op.in_dim), input_norm_max, norm)
    for cls, kind in _ELEMENTWISE.items():
        if isinstance(op, cls):
            return elementwise_constants(kind, lo, hi)
    raise NotImplementedError(f"no constants for {op!r}; supported: Linear, Tanh, Sigmoid, Softplus")


def chain_constants(net, w: np.ndarray, region, norm: str = "op"):
    """Per-operator constants and the uniform set Assumption 3 asks for.

    ``region`` is a ``propagation.VisitedRegion`` recorded while measuring
    (clean and perturbed inputs of every operator).  Returns
    ``(per_operator, uniform)``.
    """
    ws = net.split(w)
    per = [operator_constants(net.op(i), ws[i], region.input_norm_max[i - 1], region.lo[i - 1], region.hi[i - 1], norm)
           for i in range(1, len(net) + 1)]
    return per, Constants.uniform(per)
