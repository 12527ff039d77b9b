"""What the stable gradient norm tends to as γ → 0 (the theory overlays of Section 7).

With a vanishing step, SGD follows the *expected* update direction averaged
over time.  For the logistic chain with uniform perturbations that direction
is available in closed form:

* forward δ ~ U(lo, hi) after f₁ replaces σ(z) by its average over the noise,
  E[σ(z + δ)] = (softplus(z + hi) − softplus(z + lo)) / (hi − lo);
* backward ε ~ U(lo, hi) after ∂f₂/∂f₁ adds its mean (lo + hi)/2;
* a perturbation that acts every Δt iterations contributes 1/Δt of its bias.

The limit point w∞ is the zero of the averaged direction
D(w) = ∇f(w) + b(w), where b(w) is the averaged bias of the perturbed
gradient, and the predicted plateau is ‖∇f(w∞)‖ = ‖b(w∞)‖.  A zero-mean
backward perturbation has b ≡ 0 and predicts no plateau; a biased backward
perturbation has a constant b = −m·ā (ā = mean of a_l = y_l h_l), so the
plateau is m‖ā‖/Δt whatever w∞ is.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from fbsgd.perturbations import Plan

__all__ = ["averaged_bias", "small_step_limit", "smoothed_sigmoid"]


def _uniform_interval(p):
    """(lo, hi, Δt) of a perturbation whose law is U(lo, hi) and which acts every Δt
    steps forever (Δt = 1: at every step), read off ``p.law`` and ``p.schedule``;
    None when nothing is placed.  Over a long horizon such a perturbation acts at a
    fraction 1/Δt of the steps (the offset of the first step does not matter)."""
    if p is None:
        return None
    try:
        law, schedule = p.law, p.schedule
    except NotImplementedError:  # a perturbation that does not describe itself
        law = schedule = None
    if (law is not None and law.family == "uniform" and law.support is not None
            and schedule.regular and schedule.last is None):
        lo, hi = law.support
        return lo, hi, schedule.interval
    raise NotImplementedError(f"closed-form limits exist for (intermittent) uniform noise only, got {p!r}")


def smoothed_sigmoid(z, lo, hi):
    """E[σ(z + δ)] for δ ~ U(lo, hi), and its derivative in z."""
    if hi == lo:
        s = expit(z + lo)
        return s, s * (1 - s)
    width = hi - lo
    val = (np.logaddexp(0.0, z + hi) - np.logaddexp(0.0, z + lo)) / width
    der = (expit(z + hi) - expit(z + lo)) / width
    return val, der


def averaged_bias(problem, plan: Plan, w: np.ndarray):
    """Time-averaged bias b(w) = E[ũ] − u of the perturbed gradient and its Jacobian."""
    a = problem.signed_features
    z = -a @ w
    s = expit(z)
    bias = np.zeros(problem.d)
    jac = np.zeros((problem.d, problem.d))
    fwd = _uniform_interval(plan.forward.get(1))
    if fwd is not None:
        lo, hi, dt = fwd
        sbar, dsbar = smoothed_sigmoid(z, lo, hi)
        bias += -(a.T @ (sbar - s)) / problem.M / dt
        # d/dw of -(1/M) Σ a_l (s̄(z_l) − σ(z_l)), with dz_l/dw = −a_l
        jac += (a.T * (dsbar - s * (1 - s))) @ a / problem.M / dt
    bwd = _uniform_interval(plan.backward.get(2))
    if bwd is not None:
        lo, hi, dt = bwd
        bias += -0.5 * (lo + hi) * a.mean(axis=0) / dt
    return bias, jac


def _newton(problem, plan, w, tol, max_iter):
    def resid(v):
        return problem.gradient(v) + averaged_bias(problem, plan, v)[0]

    D = resid(w)
    for _ in range(max_iter):
        if np.linalg.norm(D) < tol:
            break
        _, jb = averaged_bias(problem, plan, w)
        try:
            step = np.linalg.solve(problem.hessian(w) + jb, D)
        except np.linalg.LinAlgError:
            break
        t = 1.0
        while t > 1e-8:
            cand = w - t * step
            Dc = resid(cand)
            if np.linalg.norm(Dc) < np.linalg.norm(D):
                break
            t /= 2
        else:
            break
        w, D = cand, Dc
    return w, float(np.linalg.norm(D))


def small_step_limit(problem, plan: Plan, tol: float = 1e-12, flow_steps: int = 20_000, flow_rate: float = 1.0) -> dict:
    """The γ → 0 prediction for the stable gradient norm.

    Returns ``dict(w=w∞, plateau=‖∇f(w∞)‖, escapes=False)`` when the averaged
    direction D(w) = ∇f(w) + b(w) has a zero (found by damped Newton from the
    minimizer).  When it has none, the small-step dynamics ẇ = −D(w) carry the
    iterates off to infinity; the flow is then integrated for ``flow_steps``
    steps of size ``flow_rate`` and the gradient norm it settles at is
    returned with ``escapes=True`` (‖w‖ grows linearly along the way).
    """
    w, res = _newton(problem, plan, problem.minimize(), tol, 100)
    if res < 1e-9:
        return dict(w=w, plateau=float(np.linalg.norm(problem.gradient(w))), escapes=False)
    w = np.zeros(problem.d)
    for _ in range(flow_steps):
        w = w - flow_rate * (problem.gradient(w) + averaged_bias(problem, plan, w)[0])
    return dict(w=w, plateau=float(np.linalg.norm(problem.gradient(w))), escapes=True)
