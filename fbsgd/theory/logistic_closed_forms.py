"""Closed forms for the logistic chain f₁ = −y hᵀw, f₂ = softplus of Section 7:
the moments of the gradient error of one perturbed pass, and the Assumption 3
constants that feed the coefficients (21)/(33) of :mod:`fbsgd.theory.error_bounds`.

:func:`gradient_error_moments` E‖ũ − u‖² and ‖E[ũ − u]‖² of one perturbed pass,
exactly (closed forms, and Gauss–Legendre quadrature over a shared uniform draw);
:func:`region_moments` their largest values over a region;
:func:`logistic_chain_constants` the Assumption 3 constants on a region;
:func:`assumption3_moments` the right-hand sides of (13) and (23) (the
perturbation terms of (37)/(38)).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit

from fbsgd.theory import error_bounds as B
from fbsgd.theory.small_step_limits import smoothed_sigmoid
from fbsgd.perturbations import UniformNoise

if TYPE_CHECKING:  # a configuration of the engine, read through its fields and plan() only
    from fbsgd.engine.sweeps import RunConfig

__all__ = ['uniform_ranges', 'gradient_error_moments', 'region_moments', 'logistic_chain_constants', 'assumption3_moments']


# -------------------------------------------------------------------------------------------------
# moments of the gradient error ũ − u of one pass
# -------------------------------------------------------------------------------------------------


def uniform_ranges(cfg: RunConfig):
    """(forward (lo, hi) or None, backward (lo, hi) or None, per_sample) of a configuration:
    the support of each placed perturbation's law (at the steps where it acts)."""
    def rng_of(p):
        if p is None:
            return None
        law = p.law
        if law.family != "uniform" or law.support is None:
            raise NotImplementedError(f"moments are implemented for uniform perturbations, got {p!r}")
        lo, hi = law.support
        return (lo, hi)

    plan = cfg.plan()
    return rng_of(plan.forward.get(1)), rng_of(plan.backward.get(2)), cfg.mode == "per_sample"


def _softplus(x):
    return np.logaddexp(0.0, x)


def gradient_error_moments(problem, w: np.ndarray, forward=None, backward=None, per_sample: bool = True,
                           nodes: int = 64) -> tuple[float, float]:
    """(E‖ũ − u‖², ‖E[ũ − u]‖²) of one perturbed pass of the logistic chain at w.

    The gradient error of the batch is e = −(1/M) Σ_l a_l [σ(z_l + δ_l) − σ(z_l) + ε_l]
    with z_l = −a_lᵀw, a_l = y_l h_l (the engine's (5a)–(5c)), δ ~ U(forward),
    ε ~ U(backward).  Per sample the draws are independent across samples and

        E σ(z + δ)  = [sp(z + hi) − sp(z + lo)]/(hi − lo),
        E σ(z + δ)² = [(sp − σ)(z + hi) − (sp − σ)(z + lo)]/(hi − lo)   (sp = softplus),

    so E‖e‖² = ‖E e‖² + (1/M²) Σ_l ‖a_l‖² (Var σ(z_l + δ) + Var ε).  With one draw
    shared by the batch, E‖e‖² is a one-dimensional integral over δ, done by
    Gauss–Legendre quadrature with ``nodes`` points.  ξ is common to ũ and u
    and cancels.
    """
    a = problem.signed_features
    M = a.shape[0]
    z = -a @ np.asarray(w, dtype=float)
    s = expit(z)
    abar = a.mean(axis=0)
    if backward is not None:
        blo, bhi = backward
        m_eps, e2_eps = 0.5 * (blo + bhi), (blo**2 + blo * bhi + bhi**2) / 3.0
    else:
        m_eps, e2_eps = 0.0, 0.0
    var_eps = max(e2_eps - m_eps**2, 0.0)
    mean_s, var_s = s, np.zeros_like(z)
    if forward is not None:
        lo, hi = forward
        mean_s, _ = smoothed_sigmoid(z, lo, hi)  # a point mass δ = lo when hi = lo
        if hi > lo:
            sq_s = ((_softplus(z + hi) - expit(z + hi)) - (_softplus(z + lo) - expit(z + lo))) / (hi - lo)
            var_s = np.maximum(sq_s - mean_s**2, 0.0)
    bias = -(a.T @ (mean_s - s)) / M - m_eps * abar
    bias_sq = float(bias @ bias)
    if per_sample:
        mse = bias_sq + float(np.sum((a * a).sum(axis=1) * (var_s + var_eps))) / M**2
        return mse, bias_sq
    # shared: e(δ, ε) = −g(δ) − ε ā with g(δ) = (1/M) Σ a_l (σ(z_l + δ) − σ(z_l))
    if forward is not None and forward[1] > forward[0]:
        x, wq = np.polynomial.legendre.leggauss(nodes)
        deltas = 0.5 * (forward[0] + forward[1]) + 0.5 * (forward[1] - forward[0]) * x
        G = np.array([(a.T @ (expit(z + dl) - s)) / M for dl in deltas])  # (nodes, d)
        weights = 0.5 * wq  # the uniform density times the Jacobian of the change of variables
        Eg = weights @ G
        Eg2 = float(weights @ (G * G).sum(axis=1))
    elif forward is not None:
        Eg = (a.T @ (expit(z + forward[0]) - s)) / M
        Eg2 = float(Eg @ Eg)
    else:
        Eg, Eg2 = np.zeros(problem.d), 0.0
    mse = Eg2 + 2 * m_eps * float(abar @ Eg) + e2_eps * float(abar @ abar)
    return float(mse), bias_sq


def region_moments(problem, cfg: RunConfig, points: np.ndarray) -> tuple[float, float]:
    """The largest E‖ũ − u‖² and ‖E[ũ − u]‖² of one active step of ``cfg`` over ``points``
    (the engine keeps no iterates, so the region stands in for the trajectory)."""
    fwd, bwd, per_sample = uniform_ranges(cfg)
    if fwd is None and bwd is None:
        return 0.0, 0.0
    vals = np.array([gradient_error_moments(problem, w, fwd, bwd, per_sample) for w in np.atleast_2d(points)])
    return float(vals[:, 0].max()), float(vals[:, 1].max())


# -------------------------------------------------------------------------------------------------
# Assumption 3 constants of the logistic chain, for the coefficients of (37)/(38)
# -------------------------------------------------------------------------------------------------


def logistic_chain_constants(problem, points: np.ndarray, delta_range: tuple = (0.0, 0.0)) -> B.Constants:
    """One set of Assumption 3 constants valid for both operators of the chain on a region.

    f₁(x, w) = −y hᵀw with input x = (h, y) and weight w, at the weights in ``points``
    and on the data (‖h‖ <= H = max_l ‖h_l‖, |y| = 1):

    * ∇₁f₁ = −(y wᵀ, hᵀw):  ‖∇₁f₁‖_op = √(‖w‖² + (hᵀw)²), also its Lipschitz constant L_f;
    * ∇₂f₁ = −y hᵀ:          ‖∇₂f₁‖_op = ‖h‖ <= H;
    * ∇₂f₁ is bilinear in (h, y): its derivative in x has norm √(1 + H²) (C_∇²f and
      the Lipschitz constant of ∇₂f₁), and ∇₁f₁ is Lipschitz in x with constant ‖w‖;
      the second derivatives are constant in x, so L_∇²f = 0 for f₁.

    f₂ = softplus on the range of ỹ₁ = −aᵀw + δ (δ in ``delta_range``):
    :func:`fbsgd.theory.error_bounds.elementwise_constants`.  The uniform set takes the
    maximum of each constant over the two operators, as Assumption 3 does.
    """
    W = np.atleast_2d(points)
    h = problem.features
    H = float(np.linalg.norm(h, axis=1).max())
    hw = h @ W.T  # (M, n_points)
    wn = np.linalg.norm(W, axis=1)
    j1 = float(np.sqrt(wn[None, :] ** 2 + hw**2).max())
    c2 = math.sqrt(1 + H**2)
    op1 = B.Constants(C_grad=max(j1, H), C_hess=c2, L_f=j1, L_grad=max(c2, float(wn.max())), L_hess=0.0)
    z = -problem.signed_features @ W.T
    op2 = B.elementwise_constants("softplus", [float(z.min()) + delta_range[0]], [float(z.max()) + delta_range[1]])
    return B.Constants.uniform([op1, op2])


def assumption3_moments(cfg: RunConfig, K3: B.Constants, variant: str = "printed") -> tuple[float, float]:
    """The right-hand sides of (13) and (23) for one active step of ``cfg`` (N = 2: δ₁
    after f₁, ε₂ after ∂f₂/∂f₁), from the moments of the scalar draws; they bound the
    per-sample gradient error, hence (Jensen) the batch mean's too."""
    fwd, bwd, _ = uniform_ranges(cfg)
    dsq, d4, dm, esq, em = {}, {}, {}, {}, {}
    if fwd is not None:
        mom = B.perturbation_moments(UniformNoise(*fwd), 1)
        dsq[1], dm[1], d4[1] = mom.second, mom.mean_sq, mom.fourth
    if bwd is not None:
        mom = B.perturbation_moments(UniformNoise(*bwd), 1)
        esq[2], em[2] = mom.second, mom.mean_sq
    return (B.mse_bound(2, K3, delta_sq=dsq, eps_sq=esq, variant=variant),
            B.bias_bound(2, K3, delta_mean_sq=dm, delta_fourth=d4, eps_mean_sq=em, variant=variant))
