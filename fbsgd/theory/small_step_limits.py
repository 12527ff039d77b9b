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

Any mechanism: the conditional laws
-----------------------------------
The argument does not need uniform noise.  With ũ(w) = −(1/M) Σ_l a_l ṽ_l + ρ∇R(w) and
ṽ_l = P_b(σ(P_f(z_l))), the averaged direction is D(w) = E ũ(w) averaged over the steps, and it
needs only each perturbation's law *given its input* (:meth:`fbsgd.perturbations.Perturbation.conditional_law`):

    E ṽ_l = q_none σ(z_l) + q_f E[σ(P_f(z_l))] + q_b E[P_b(σ(z_l))] + q_both E[P_b(σ(P_f(z_l)))]

where q_f, q_b, q_both are the fractions of steps at which only the forward, only the backward,
or both perturbations act (their schedules' duty cycles, :func:`fbsgd.laws.duty_cycle`, the joint
one from the intersection of the schedules).  Expectations over a finite support (rounding to
nearest or stochastically, Top-K, Rand-K, bit flips, constants) are exact sums; over uniform or
Gaussian noise they are Gauss–Legendre / Gauss–Hermite quadratures of the same smooth
integrands as the closed forms; for a kind known only by its ``apply`` they are Monte Carlo
means over common random numbers (the same draws at every w, so D is a deterministic function).
:func:`averaged_direction` evaluates D, :func:`conditional_averaged_bias` b = D − ∇f, and
``small_step_limit(..., method="conditional")`` finds the zero of D; the default ``method="auto"``
keeps the closed forms for (intermittent) uniform noise, the fast exact case, and uses the
conditional laws for everything else.  The general method reproduces the closed forms to 1e-8
relative (``tests/theory/test_small_step_limits.py``).

For rounding to nearest or Top-K, D is piecewise constant in w (P(x) is a step function of x), so
it has no exact zero: the damped Newton iteration then stops where ‖D‖ no longer decreases, a
point where D changes sign within the format's resolution, and the result carries the
``residual`` ‖D(w∞)‖ next to the plateau ‖∇f(w∞)‖ (it settles when the residual is below
``settle_rtol`` times the plateau).  The chain is computed in float64 with the exact σ; the
compiled engine's float32 pass differs from it by float32 rounding only.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from fbsgd import laws, rng
from fbsgd.perturbations import Plan

__all__ = ["averaged_bias", "small_step_limit", "smoothed_sigmoid", "duty_fractions", "expected_backward_message",
           "averaged_direction", "conditional_averaged_bias", "METHODS"]

METHODS = ("auto", "closed_form", "conditional")


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


def _closed_form_available(plan: Plan) -> bool:
    try:
        _uniform_interval(plan.forward.get(1))
        _uniform_interval(plan.backward.get(2))
    except NotImplementedError:
        return False
    return True


def _closed_form_limit(problem, plan, tol, flow_steps, flow_rate) -> dict:
    w, res = _newton(problem, plan, problem.minimize(), tol, 100)
    if res < 1e-9:
        return dict(w=w, plateau=float(np.linalg.norm(problem.gradient(w))), escapes=False, method="closed_form",
                    residual=res)
    w = np.zeros(problem.d)
    for _ in range(flow_steps):
        w = w - flow_rate * (problem.gradient(w) + averaged_bias(problem, plan, w)[0])
    res = float(np.linalg.norm(problem.gradient(w) + averaged_bias(problem, plan, w)[0]))
    return dict(w=w, plateau=float(np.linalg.norm(problem.gradient(w))), escapes=True, method="closed_form",
                residual=res)


def small_step_limit(problem, plan: Plan, tol: float = 1e-12, flow_steps: int = 20_000, flow_rate: float = 1.0, *,
                     method: str = "auto", horizon: int | None = None, draws: int = laws.DEFAULT_DRAWS,
                     seed: int = 0) -> dict:
    """The γ → 0 prediction for the stable gradient norm.

    Returns ``dict(w=w∞, plateau=‖∇f(w∞)‖, escapes=False, method, residual=‖D(w∞)‖)`` when the
    averaged direction D(w) = ∇f(w) + b(w) has a zero (found by damped Newton from the
    minimizer).  When it has none, the small-step dynamics ẇ = −D(w) carry the
    iterates off to infinity; the flow is then integrated for ``flow_steps``
    steps of size ``flow_rate`` and the gradient norm it settles at is
    returned with ``escapes=True`` (‖w‖ grows linearly along the way).

    ``method``: "closed_form" (uniform noise, intermittent or not, forever: :func:`averaged_bias`;
    anything else raises NotImplementedError), "conditional" (any perturbation, through its
    conditional law given the input: :func:`averaged_direction`), or "auto" (the closed form where it
    exists, else the conditional laws; the result's ``method`` says which ran).  For the conditional
    method: ``horizon`` gives the duty cycle of a schedule that stops (a budget: its count over
    ``horizon`` steps), ``draws`` and ``seed`` the Monte Carlo estimate of a kind known only by its
    ``apply``.  Where Newton stops with ‖D‖ ≥ 1e-9 (rounding to nearest makes D piecewise constant,
    with no exact zero), the flow ẇ = −D(w) is run from that point for min(``flow_steps``, 2000)
    steps of ``flow_rate``: if it ends less than a tenth of its path length from where it started, the
    iterates have settled there, chattering across the jumps of D, and w∞ is the mean of the flow's
    second half (its plateau,
    ‖∇f(w∞)‖, is what small steps average over); otherwise the flow from 0 is integrated as above
    and ``escapes`` says whether ‖w‖ still grows over its second half.  A kind with memory whose
    settled law at the minimizer's input does not exist (its memory blows up there,
    :func:`fbsgd.laws.stationary`: NaN moments) predicts divergence: plateau inf, ``escapes=True``,
    residual NaN.
    """
    if method not in METHODS:
        raise ValueError(f"small_step_limit: method must be one of {list(METHODS)}, got {method!r}")
    if method == "closed_form" or (method == "auto" and _closed_form_available(plan)):
        return _closed_form_limit(problem, plan, tol, flow_steps, flow_rate)
    direction = _direction(problem, plan, horizon, draws, seed)
    w0 = problem.minimize()
    with np.errstate(invalid="ignore"):
        if not np.all(np.isfinite(direction(w0))):  # a memory that blows up at a frozen input: no settled law
            return dict(w=np.full(problem.d, np.nan), plateau=float("inf"), escapes=True, method="conditional",
                        residual=float("nan"))
    w, res = _general_newton(problem, direction, w0, tol, 100)
    if res < 1e-9:
        return dict(w=w, plateau=float(np.linalg.norm(problem.gradient(w))), escapes=False, method="conditional",
                    residual=res)
    probe, path, length = w.copy(), [], 0.0
    n_probe = min(flow_steps, 2000)
    for _ in range(n_probe):
        step = flow_rate * direction(probe)
        probe = probe - step
        length += float(np.linalg.norm(step))
        path.append(probe)
    if n_probe and np.linalg.norm(probe - w) <= 0.1 * length:
        w_bar = np.mean(path[n_probe // 2:], axis=0)
        return dict(w=w_bar, plateau=float(np.linalg.norm(problem.gradient(w_bar))), escapes=False,
                    method="conditional", residual=float(np.linalg.norm(direction(w_bar))))
    w = np.zeros(problem.d)
    half = None
    for k in range(flow_steps):
        w = w - flow_rate * direction(w)
        if k == flow_steps // 2:
            half = float(np.linalg.norm(w))
    res = float(np.linalg.norm(direction(w)))
    grows = half is not None and float(np.linalg.norm(w)) > 1.1 * half + 1e-12
    return dict(w=w, plateau=float(np.linalg.norm(problem.gradient(w))), escapes=bool(grows), method="conditional",
                residual=res)


# -------------------------------------------------------------------------------------------------
# the averaged direction from the conditional laws (any perturbation)
# -------------------------------------------------------------------------------------------------


def _placed(plan: Plan):
    """(forward perturbation at operator 1 or None, backward at operator 2 or None) of the logistic chain."""
    if not isinstance(plan, Plan):
        raise ValueError(f"plan must be a fbsgd.perturbations.Plan, got {type(plan).__name__}")
    extra = sorted(set(plan.forward) - {1, 2}) + sorted(set(plan.backward) - {2})
    if extra:
        raise NotImplementedError(f"the logistic chain has two operators: δ at operator 1 (or 2, on the loss, which "
                                  f"does not enter the gradient) and ε at operator 2; got places {extra}")
    return plan.forward.get(1), plan.backward.get(2)


def duty_fractions(plan: Plan, horizon: int | None = None) -> dict:
    """The fractions of steps at which only the forward perturbation acts (``forward``), only the
    backward one (``backward``), both (``both``) and neither (``none``): each schedule's duty cycle
    (:func:`fbsgd.laws.duty_cycle`), the joint one from the intersection of the two schedules."""
    pf, pb = _placed(plan)
    qf = laws.duty_cycle(pf.schedule, horizon) if pf is not None else 0.0
    qb = laws.duty_cycle(pb.schedule, horizon) if pb is not None else 0.0
    both = laws.duty_cycle(pf.schedule & pb.schedule, horizon) if pf is not None and pb is not None else 0.0
    return dict(forward=qf - both, backward=qb - both, both=both, none=1.0 - qf - qb + both)


def _backward_after_forward(pf, pb, Lf, z, draws, seed):
    """E[P_b(σ(P_f(z))) | z] per sample, at a step where both act."""
    probe = pb.conditional_law(expit(z), draws=draws, seed=seed)
    if isinstance(Lf, laws.FiniteLaw) and Lf.points.shape[-1] == 1:  # a deterministic forward: exact for any P_b
        return pb.conditional_law(expit(Lf.points[..., 0]), draws=draws, seed=seed).mean()
    if probe.elementwise and probe.exact:  # entry by entry over the forward law's support / nodes
        return Lf.expect(lambda y: pb.conditional_law(expit(y), draws=draws, seed=seed).mean())
    # joint Monte Carlo over whole messages: forward draws, then the backward law (or one backward draw) of each
    fwd = Lf.samples if isinstance(Lf, laws.MonteCarloLaw) else laws.monte_carlo(pf, z, draws, seed).samples
    sched = pb.schedule
    step = sched.first if sched.steps is None else min(sched.steps)
    acc = np.zeros(z.shape)
    for j in range(fwd.shape[-1]):
        s = expit(fwd[..., j])
        if probe.exact:
            acc += pb.conditional_law(s, draws=draws, seed=seed).mean()
        else:
            key = rng.derive_key("fbsgd.small_step_limits.joint", int(seed), j)
            acc += np.asarray(pb.transform(s.copy(), key, step, pb.init_memory())[0], dtype=float).reshape(z.shape)
    return acc / fwd.shape[-1]


def expected_backward_message(problem, plan: Plan, w: np.ndarray, *, horizon: int | None = None,
                              draws: int = laws.DEFAULT_DRAWS, seed: int = 0) -> np.ndarray:
    """E ṽ_l averaged over the steps, per sample l (the module's formula), from the conditional laws of
    the plan's forward (operator 1) and backward (operator 2) perturbations at z = −a w."""
    q = duty_fractions(plan, horizon)
    pf, pb = _placed(plan)
    z = (-problem.signed_features @ np.asarray(w, dtype=float))[:, None]  # (M, 1): the message of the passes
    s = expit(z)
    out = q["none"] * s
    Lf = pf.conditional_law(z, draws=draws, seed=seed) if pf is not None and q["forward"] + q["both"] > 0 else None
    if q["forward"] > 0:
        out = out + q["forward"] * Lf.expect(expit)
    if q["backward"] > 0:
        out = out + q["backward"] * pb.conditional_law(s, draws=draws, seed=seed).mean()
    if q["both"] > 0:
        out = out + q["both"] * _backward_after_forward(pf, pb, Lf, z, draws, seed)
    return out[:, 0]


def averaged_direction(problem, plan: Plan, w: np.ndarray, *, horizon: int | None = None,
                       draws: int = laws.DEFAULT_DRAWS, seed: int = 0) -> np.ndarray:
    """D(w) = −(1/M) Σ_l a_l E ṽ_l + ρ∇R(w), the direction small-step SGD follows (any perturbations)."""
    w = np.asarray(w, dtype=float)
    v = expected_backward_message(problem, plan, w, horizon=horizon, draws=draws, seed=seed)
    return -(problem.signed_features.T @ v) / problem.M + problem.rho * problem.regularizer.gradient(w)


def conditional_averaged_bias(problem, plan: Plan, w: np.ndarray, *, horizon: int | None = None,
                              draws: int = laws.DEFAULT_DRAWS, seed: int = 0) -> np.ndarray:
    """b(w) = D(w) − ∇f(w), the time-averaged bias of the perturbed gradient, from the conditional laws
    (:func:`averaged_bias` is its closed form for uniform noise)."""
    w = np.asarray(w, dtype=float)
    v = expected_backward_message(problem, plan, w, horizon=horizon, draws=draws, seed=seed)
    a = problem.signed_features
    return -(a.T @ (v - expit(-a @ w))) / problem.M


def _direction(problem, plan, horizon, draws, seed):
    duty_fractions(plan, horizon)  # refuse a bad plan or schedule before anything is computed
    return lambda v: averaged_direction(problem, plan, v, horizon=horizon, draws=draws, seed=seed)


def _general_newton(problem, D, w, tol, max_iter):
    """Damped Newton on D with a forward-difference Jacobian; where that step does not lower ‖D‖
    (D piecewise constant: the differences see jumps) the Hessian of f is tried instead."""
    r = D(w)
    for _ in range(max_iter):
        nr = float(np.linalg.norm(r))
        if nr < tol:
            break
        h = 1e-6 * np.maximum(1.0, np.abs(w))
        J = np.empty((w.size, w.size))
        for j in range(w.size):
            e = np.zeros(w.size)
            e[j] = h[j]
            J[:, j] = (D(w + e) - r) / h[j]
        moved = False
        for A in (J, problem.hessian(w)):
            try:
                step = np.linalg.solve(A, r)
            except np.linalg.LinAlgError:
                continue
            t = 1.0
            while t > 1e-8:
                cand = w - t * step
                rc = D(cand)
                if np.linalg.norm(rc) < nr:
                    w, r, moved = cand, rc, True
                    break
                t /= 2
            if moved:
                break
        if not moved:
            break
    return w, float(np.linalg.norm(r))
