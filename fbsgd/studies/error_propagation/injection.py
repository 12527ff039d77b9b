"""How a perturbation injected inside the passes reaches the weight gradient
(Section 1.4.2 and Section 4).

:func:`depth_amplification` is the numeric form of the additive-vs-
accumulative example (6a)/(6b): a linear network, no forward perturbation and
one backward perturbation at the deepest operator, ε_N.  In the accumulative
model (5b) it reaches the first weight gradient as
ũ₁ − u₁ = (W₂ᵀ⋯W_{N−1}ᵀ ε_N) xᵀ, while an additive model would leave an error
of ‖ε_N‖ whatever the depth.

:func:`gradient_error` measures the two quantities that Section 4 bounds, the
mean-square error E‖ũ − u‖² (Theorem 1) and the squared bias ‖E[ũ − u]‖²
(Theorem 2), for any chain, input, weights and perturbation plan, by Monte
Carlo with standard errors; :func:`linear_chain_error` gives both in
closed form for a linear chain.  The bounds themselves are in
:mod:`fbsgd.theory.error_bounds`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fbsgd.theory import error_bounds as _bounds
from fbsgd import perturbations as _pert
from fbsgd.operators import Linear, Tanh
from fbsgd.passes import Composite, passes, perturbed_passes
from fbsgd.perturbations import Constant, Plan

__all__ = ["scaled_layers", "depth_amplification",
           "VisitedRegion", "GradientError", "gradient_error", "linear_chain_error", "tanh_chain", "unit_vector", "error_vs_bounds"]


def scaled_layers(depth: int, width: int, scale: float, kind: str = "orthogonal", seed: int = 0):
    """A linear network of ``depth`` operators: depth−1 square layers W_i with
    ‖W_i‖_op = scale, then a readout row to a scalar.  Returns (net, w, Ws).

    ``orthogonal``: W_i = scale·Q_i with Q_i Haar-random orthogonal, so every
    vector is stretched by exactly ``scale``.  ``gaussian``: Gaussian W_i
    rescaled to spectral norm ``scale`` (a typical vector is stretched less).
    """
    if depth < 2:
        raise ValueError(f"depth must be >= 2, got {depth}")
    if kind not in ("orthogonal", "gaussian"):
        raise ValueError(f"kind must be 'orthogonal' or 'gaussian', got {kind!r}")
    rng = np.random.default_rng(seed)
    Ws = []
    for _ in range(depth - 1):
        G = rng.standard_normal((width, width))
        if kind == "orthogonal":
            Q, R = np.linalg.qr(G)
            W = scale * Q * np.sign(np.diag(R))
        else:
            W = scale * G / np.linalg.norm(G, 2)
        Ws.append(W)
    readout = rng.standard_normal((1, width)) / np.sqrt(width)
    Ws.append(readout)
    net = Composite([Linear(width, width) for _ in range(depth - 1)] + [Linear(width, 1)])
    return net, np.concatenate([W.ravel() for W in Ws]), Ws


def depth_amplification(depths, width: int, scales, eps_norm: float = 1e-3, kind: str = "orthogonal", seed: int = 0) -> pd.DataFrame:
    """Error in the first weight gradient from a constant backward perturbation
    ε_N (‖ε_N‖ = eps_norm) at the deepest operator, per depth and layer scale.

    Columns: depth, scale, kind, accumulative (measured ‖ũ₁ − u₁‖ through the
    perturbed passes), additive (the same ε added to u₁ directly, eq. 6a),
    closed_form (‖W₂ᵀ⋯W_{N−1}ᵀ ε_N‖·‖x‖ computed by matrix products).
    """
    rows = []
    rng = np.random.default_rng(seed + 10_000)
    x = rng.standard_normal((1, width))
    x /= np.linalg.norm(x)
    eps = rng.standard_normal(width)
    eps *= eps_norm / np.linalg.norm(eps)
    for scale in scales:
        for depth in depths:
            net, w, Ws = scaled_layers(depth, width, scale, kind, seed)
            plan = Plan(backward={depth: Constant(eps)})
            clean = passes(net, x, w)
            pert, _ = perturbed_passes(net, x, w, plan, plan.init(seed))
            measured = np.linalg.norm(pert.us[1] - clean.us[1])
            e = eps.copy()
            for W in reversed(Ws[1 : depth - 1]):  # W₂ᵀ⋯W_{N−1}ᵀ ε_N
                e = W.T @ e
            rows.append(dict(depth=depth, scale=scale, kind=kind, accumulative=measured,
                             additive=eps_norm, closed_form=np.linalg.norm(e) * np.linalg.norm(x)))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Section 4 measured: the per-step gradient error of a chain at fixed (x, w)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VisitedRegion:
    """Where the inputs ỹ_{i−1} of each operator went during a measurement.

    Lists are indexed by operator i − 1 (operator i reads ỹ_{i−1}); each
    covers the clean input y_{i−1} and every perturbed draw.
    ``input_norm_max[i-1]`` = max ‖ỹ_{i−1}‖, ``lo``/``hi`` = coordinatewise
    min/max of ỹ_{i−1}.
    """

    input_norm_max: list
    lo: list
    hi: list

    def merge(self, other: "VisitedRegion") -> "VisitedRegion":
        return VisitedRegion([max(a, b) for a, b in zip(self.input_norm_max, other.input_norm_max)],
                             [np.minimum(a, b) for a, b in zip(self.lo, other.lo)],
                             [np.maximum(a, b) for a, b in zip(self.hi, other.hi)])

    @staticmethod
    def of(ys) -> "VisitedRegion":
        ins = ys[:-1]
        return VisitedRegion([float(np.sqrt(np.einsum("ij,ij->i", y, y).max())) for y in ins],
                             [y.min(axis=0) for y in ins], [y.max(axis=0) for y in ins])


@dataclass(frozen=True)
class GradientError:
    """Monte Carlo estimates of the two quantities of Section 4 at fixed (x, w).

    ``mse``     E‖ũ − u‖²           (left-hand side of (13))
    ``bias_sq`` ‖E[ũ − u]‖²         (left-hand side of (23), E_t at fixed x, w)
    with standard errors ``*_se`` (see :func:`gradient_error`);
    ``bias_sq_se0`` is the standard error ``bias_sq`` would have if the bias
    were zero (at zero bias ``bias_sq`` is not normal but skewed to the right,
    like a centred sum of χ² variables);
    ``mse_by_operator[i-1]`` = E‖ũ_i − u_i‖².
    """

    mse: float
    mse_se: float
    bias_sq: float
    bias_sq_se: float
    bias_sq_se0: float
    n_draws: int
    n_groups: int
    mse_by_operator: np.ndarray
    region: VisitedRegion

    def mse_ci(self, z: float = 1.96) -> tuple[float, float]:
        return self.mse - z * self.mse_se, self.mse + z * self.mse_se

    def bias_sq_ci(self, z: float = 1.96) -> tuple[float, float]:
        return self.bias_sq - z * self.bias_sq_se, self.bias_sq + z * self.bias_sq_se


def _check_iid(p) -> None:
    """Every row of a batch must be an independent draw of the same law.

    Asked of the perturbation itself: it must act at every step (its
    ``schedule`` is :meth:`Schedule.always`; a chain's schedule joins its
    parts'), and a random law must draw per sample (``law.per_sample``; a
    chain's law aggregates its parts').  A deterministic law (a constant, or a
    law of zero variance) is the same independent "draw" in every row.
    """
    if p.schedule != _pert.Schedule.always():
        raise ValueError(f"{type(p).__name__} switches with the step; gradient_error measures one step's law, "
                         "pass the inner perturbation instead")
    try:
        law = p.law
    except NotImplementedError:  # a perturbation that does not describe its law: nothing to check
        return
    deterministic = law.family == "constant" or law.variance == 0
    if not law.per_sample and not deterministic:
        raise ValueError(f"{p!r} draws one value for the whole batch; gradient_error needs per_sample=True")


def gradient_error(net: Composite, w: np.ndarray, x: np.ndarray, plan: Plan, n_draws: int,
                   seed: int = 0, max_batch: int = 4096, min_groups: int = 16) -> GradientError:
    """E‖ũ − u‖² and ‖E[ũ − u]‖² for one input ``x`` and weights ``w``, by Monte Carlo.

    How it works.  ``x`` (one sample) is replicated along the batch axis, so one
    call of :func:`perturbed_passes` with ``plan`` gives one independent draw of
    the perturbations per row (every perturbation draws per row); each call is
    one *group* of draws and the plan's streams advance one step between groups.
    ũ − u is taken against the clean passes (eq. 4) at the same (x, w).
    ``n_draws`` is rounded up to a whole number of groups, with at least
    ``min_groups`` groups of at most ``max_batch`` rows.

    Estimators.  With Δ_r = ũ_r − u for draws r = 1..n:

    * E‖Δ‖² by the sample mean of ‖Δ_r‖²;
    * ‖EΔ‖² by the U-statistic (‖Σ_r Δ_r‖² − Σ_r ‖Δ_r‖²) / (n(n−1)) =
      mean over pairs r ≠ s of ⟨Δ_r, Δ_s⟩, which is unbiased (the plug-in
      ‖mean Δ‖² overestimates by tr Cov(Δ)/n) and can be negative when the
      true bias is zero.

    Standard errors.  For the mean square: the delete-one-group jackknife
    (equal to the batch-means standard error).  For the U-statistic: its exact
    variance  2[2(n−2)ζ₁ + ζ₂] / (n(n−1))  with ζ₁ = μᵀΣμ and
    ζ₂ = tr Σ² + 2μᵀΣμ (μ, Σ the mean and covariance of Δ), where ζ₁ and
    tr Σ² are estimated from the group means by U-statistics of their Gram
    matrix (:func:`_u_statistic_variance`; ζ₁ clipped at 0).  Near zero bias
    the estimate of ζ₁ is mostly noise and makes this standard error
    conservative (too large by 10–30% in the cases tested); the
    standard error at exactly zero bias, √(2 tr Σ² / (n(n−1))), is returned
    as ``bias_sq_se0``.  (A jackknife is not used for the U-statistic: at
    zero bias the U-statistic is degenerate, its jackknife variance follows
    the realised Σ_r Δ_r, and for a low-rank Σ it comes out several times
    too small in a few percent of runs.)
    """
    for where in (plan.forward, plan.backward):
        for p in where.values():
            _check_iid(p)
    x = np.atleast_2d(np.asarray(x, dtype=float))
    if x.shape[0] != 1:
        raise ValueError(f"gradient_error measures one sample at a time, got x with {x.shape[0]} rows")
    if n_draws < 2 * min_groups:
        raise ValueError(f"need at least {2 * min_groups} draws, got {n_draws}")
    batch = int(min(max_batch, math.ceil(n_draws / min_groups)))
    n_groups = int(math.ceil(n_draws / batch))
    N = len(net)
    clean = passes(net, x, w)
    region = VisitedRegion.of(clean.ys)
    X = np.repeat(x, batch, axis=0)
    state = plan.init(seed)
    sums = np.zeros((n_groups, net.weight_size))  # Σ_r Δ_r per group
    sq = np.zeros(n_groups)  # Σ_r ‖Δ_r‖² per group
    sq_op = np.zeros(N)
    buf = [None] + [np.empty((batch, net.sizes[i - 1])) for i in range(1, N + 1)]  # Δ per operator, reused
    for g in range(n_groups):
        out, state = perturbed_passes(net, X, w, plan, state)
        for i in range(1, N + 1):
            d = np.subtract(out.us[i], clean.us[i], out=buf[i])
            sums[g, net.offsets[i - 1]: net.offsets[i]] = d.sum(axis=0)
            s = float(np.einsum("ij,ij->", d, d))
            sq[g] += s
            sq_op[i - 1] += s
        region = region.merge(VisitedRegion.of(out.ys))
    n = batch * n_groups

    def mse_of(S_sq, m):
        return S_sq / m

    def u_of(S, Q, m):
        return (float(S @ S) - Q) / (m * (m - 1))

    S, Q = sums.sum(axis=0), sq.sum()
    mse, bias = mse_of(Q, n), u_of(S, Q, n)
    k = n_groups
    jk_mse = np.array([mse_of(Q - sq[g], n - batch) for g in range(k)])
    mse_se = float(np.sqrt((k - 1) / k * np.sum((jk_mse - jk_mse.mean()) ** 2)))
    var, var0 = _u_statistic_variance(sums / batch, batch, n)
    return GradientError(float(mse), mse_se, float(bias), float(np.sqrt(var)), float(np.sqrt(var0)), n, k, sq_op / n, region)


def _u_statistic_variance(means: np.ndarray, b: int, n: int) -> float:
    """Variance of the U-statistic of ‖EΔ‖² over n = K·b i.i.d. draws, estimated from
    the K group means (rows of ``means``, each the mean of b draws).

    The group means m_a are i.i.d. with mean μ and covariance Σ/b.  With the Gram
    matrix G_ab = ⟨m_a, m_b⟩ and averages over distinct indices,
    A = avg G_ab G_ac = μᵀ(Σ/b)μ + ‖μ‖⁴,  B = avg G_ab G_cd = ‖μ‖⁴,
    C = avg G_ab² = tr(Σ/b)² + 2μᵀ(Σ/b)μ + ‖μ‖⁴, all unbiased; hence
    ζ₁ = μᵀΣμ = b(A − B) and tr Σ² = b²(C − 2A + B).  Negative estimates
    (possible by chance) are clipped to 0.  Returns (Var U, Var U if μ = 0).
    """
    K = means.shape[0]
    if K < 4:
        raise ValueError("need at least 4 groups")
    G = means @ means.T
    off = G - np.diag(np.diag(G))
    r = off.sum(axis=1)
    T, W = float(r.sum()), float((off**2).sum())
    V = float((r**2).sum()) - W
    D = T**2 - 4 * V - 2 * W
    A = V / (K * (K - 1) * (K - 2))
    Bq = D / (K * (K - 1) * (K - 2) * (K - 3))
    C = W / (K * (K - 1))
    zeta1 = max(b * (A - Bq), 0.0)
    tr2 = max(b * b * (C - 2 * A + Bq), 0.0)
    zeta2 = tr2 + 2 * zeta1
    return 2.0 * (2 * (n - 2) * zeta1 + zeta2) / (n * (n - 1)), 2.0 * tr2 / (n * (n - 1))


def _second_moment_matrix(mean, var: float, d: int) -> np.ndarray:
    m = np.broadcast_to(np.asarray(mean, dtype=float), (d,))
    return var * np.eye(d) + np.outer(m, m)


def linear_chain_error(Ws, x, where: str, k: int, mean=0.0, var: float = 0.0) -> tuple[float, float]:
    """Exact (E‖ũ − u‖², ‖E[ũ − u]‖²) for a linear chain f_i(y) = W_i y (W_N a row)
    with one perturbation of entrywise mean ``mean`` (scalar or vector) and
    covariance ``var``·I, at ``where`` = "forward" (δ_k) or "backward" (ε_k).

    Closed forms, from u_i = v_i y_{i−1}ᵀ with v_i = W_{i+1}ᵀ⋯W_Nᵀ·1 and
    y_i = W_i⋯W_1 x, and M = E[ppᵀ] = var·I + mmᵀ for the perturbation p:

    * forward δ_k: ũ_i − u_i = v_i (B_i p)ᵀ for i > k, B_i = W_{i−1}⋯W_{k+1};
      E‖·‖² = Σ_i ‖v_i‖² tr(B_i M B_iᵀ), bias = Σ_i ‖v_i‖² ‖B_i m‖²;
    * backward ε_k: ũ_i − u_i = (A_i p) y_{i−1}ᵀ for i < k, A_i = W_{i+1}ᵀ⋯W_{k−1}ᵀ;
      E‖·‖² = Σ_i ‖y_{i−1}‖² tr(A_i M A_iᵀ), bias = Σ_i ‖y_{i−1}‖² ‖A_i m‖².
    """
    Ws = [np.atleast_2d(np.asarray(W, dtype=float)) for W in Ws]
    N = len(Ws)
    x = np.asarray(x, dtype=float).ravel()
    ys = [x]
    for W in Ws:
        ys.append(W @ ys[-1])
    vs = [None] * (N + 1)
    vs[N] = np.ones(1)
    for i in range(N, 1, -1):
        vs[i - 1] = Ws[i - 1].T @ vs[i]
    mse = bias = 0.0
    if where == "forward":
        if not 1 <= k <= N - 1:
            raise ValueError(f"forward perturbation at 1..N-1, got {k}")
        d = Ws[k - 1].shape[0]
        M, m = _second_moment_matrix(mean, var, d), np.broadcast_to(np.asarray(mean, float), (d,))
        B = np.eye(d)
        for i in range(k + 1, N + 1):  # B_i maps δ_k to the change of y_{i-1}
            if i > k + 1:
                B = Ws[i - 2] @ B
            v2 = float(vs[i] @ vs[i])
            mse += v2 * float(np.trace(B @ M @ B.T))
            bias += v2 * float(np.sum((B @ m) ** 2))
    elif where == "backward":
        if not 2 <= k <= N:
            raise ValueError(f"backward perturbation at 2..N, got {k}")
        d = Ws[k - 1].shape[1]
        M, m = _second_moment_matrix(mean, var, d), np.broadcast_to(np.asarray(mean, float), (d,))
        A = np.eye(d)
        for i in range(k - 1, 0, -1):  # A_i maps ε_k to the change of v_i
            if i < k - 1:
                A = Ws[i].T @ A
            y2 = float(ys[i - 1] @ ys[i - 1])
            mse += y2 * float(np.trace(A @ M @ A.T))
            bias += y2 * float(np.sum((A @ m) ** 2))
    else:
        raise ValueError(f"where must be 'forward' or 'backward', got {where!r}")
    return mse, bias


def tanh_chain(n_layers: int, width: int, gain: float, seed: int = 0):
    """A tanh network as a chain of N = 2L + 1 operators:
    Linear, Tanh, Linear, Tanh, …, Linear (readout to a scalar).

    Hidden weights W_i = gain·G_i/√width with G_i standard Gaussian; the
    readout is a Gaussian row of unit norm.  Returns (net, w).
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    rng = np.random.default_rng(seed)
    ops, ws = [], []
    for _ in range(n_layers):
        ops += [Linear(width, width), Tanh(width)]
        ws.append(gain * rng.standard_normal((width, width)).ravel() / np.sqrt(width))
    r = rng.standard_normal(width)
    ops.append(Linear(width, 1))
    ws.append(r / np.linalg.norm(r))
    return Composite(ops), np.concatenate(ws)


def unit_vector(d: int, seed: int = 0) -> np.ndarray:
    """A random input of unit norm, shape (1, d)."""
    x = np.random.default_rng(seed + 20_000).standard_normal((1, d))
    return x / np.linalg.norm(x)


def error_vs_bounds(net: Composite, w: np.ndarray, x: np.ndarray, where: str, k: int, p, n_draws: int,
                    seed: int = 0, norm: str = "op", max_batch: int = 4096) -> dict:
    """Measure one perturbation placed at ``where`` ("forward": δ_k, "backward": ε_k)
    and evaluate the paper's bounds for it, as one table row.

    The operator constants are estimated on the region the measurement
    visited (:func:`fbsgd.theory.error_bounds.chain_constants`); the perturbation's
    moments are exact (:func:`fbsgd.theory.error_bounds.perturbation_moments`).  Columns:
    N, where, k, mse(_se), bias_sq(_se), the perturbation's moments, the
    right-hand sides of (13) and (23) (printed constants and, with suffix
    ``_derivation``, the constants the proofs derive), and the uniform
    constants C_grad, C_hess, L_f, L_grad, L_hess, C_v.  ``max_batch``: rows per group
    of draws (:func:`gradient_error`).
    """
    if where not in ("forward", "backward"):
        raise ValueError(f"where must be 'forward' or 'backward', got {where!r}")
    N = len(net)
    ge = gradient_error(net, w, x, Plan(**{where: {k: p}}), n_draws, seed=seed, max_batch=max_batch)
    _, K = _bounds.chain_constants(net, w, ge.region, norm=norm)
    mom = _bounds.perturbation_moments(p, net.op(k).out_dim if where == "forward" else net.op(k).in_dim)
    row = dict(N=N, where=where, k=k, mse=ge.mse, mse_se=ge.mse_se, bias_sq=ge.bias_sq, bias_sq_se=ge.bias_sq_se,
               n_draws=ge.n_draws, mean_sq=mom.mean_sq, second=mom.second, fourth=mom.fourth)
    for variant in _bounds.VARIANTS:
        suffix = "" if variant == "printed" else "_derivation"
        if where == "forward":
            row["mse_bound" + suffix] = _bounds.mse_bound(N, K, delta_sq={k: mom.second}, variant=variant)
            row["bias_bound" + suffix] = _bounds.bias_bound(N, K, delta_mean_sq={k: mom.mean_sq}, delta_fourth={k: mom.fourth},
                                                            variant=variant)
        else:
            row["mse_bound" + suffix] = _bounds.mse_bound(N, K, eps_sq={k: mom.second}, variant=variant)
            row["bias_bound" + suffix] = _bounds.bias_bound(N, K, eps_mean_sq={k: mom.mean_sq}, variant=variant)
    row.update(C_grad=K.C_grad, C_hess=K.C_hess, L_f=K.L_f, L_grad=K.L_grad, L_hess=K.L_hess, C_v=_bounds.c_v(K.C_grad, N))
    return row
