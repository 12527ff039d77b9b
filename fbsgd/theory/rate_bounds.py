"""The right-hand sides of Theorems 3 and 5 for the Section 7 problem, and the
problem constants they need.

:func:`estimate_constants` L_∇ℓ, μ, σ², Δ₀ of the Section 7 problem on a region;
:func:`rhs_nonconvex` the right-hand side of (34) term by term;
:func:`rhs_pl`        the right-hand side of (38)/(41) term by term.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ['ProblemConstants', 'path', 'estimate_constants', 'rhs_nonconvex', 'rhs_pl']


# -------------------------------------------------------------------------------------------------
# constants of the Section 7 problem
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProblemConstants:
    """The constants of Theorems 3–5 for one problem, estimated on a region.

    ``L``: L_∇ℓ, the largest Hessian eigenvalue on the region; ``mu``: the
    smallest (the PL constant μ of Assumption 4 when the loss is strongly
    convex there); ``sigma2``: σ² = d·σ_n² of Assumption 2 (the sampling noise
    ξ ~ N(0, σ_n² I_d)); ``delta0``: Δ₀ = f(w₀) − f*.
    """

    L: float
    mu: float
    sigma2: float
    delta0: float
    f_star: float
    w_star: np.ndarray

    def step_limit(self) -> float:
        """The step-size condition of Theorems 3–5: γ <= 1/(3 L_∇ℓ)."""
        return 1.0 / (3.0 * self.L)


def path(w_from: np.ndarray, w_to: np.ndarray, n: int = 41) -> np.ndarray:
    """n points on the segment from w_from to w_to (both included)."""
    s = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - s) * np.asarray(w_from, dtype=float)[None, :] + s * np.asarray(w_to, dtype=float)[None, :]


def estimate_constants(problem, noise_std: float, w0: np.ndarray | None = None, points: np.ndarray | None = None,
                       n_path: int = 41) -> ProblemConstants:
    """L_∇ℓ and μ from the Hessian's extreme eigenvalues over the region visited by
    the iterates, taken as the segment from w₀ to the minimizer w* plus ``points``
    (e.g. the γ → 0 limits of perturbed runs); σ² = d σ_n²; Δ₀ = f(w₀) − f*.

    For this logistic regression the Hessian is at most ¼AᵀA/M + ρ max R'' in the
    Loewner order, and both bounds are attained at w = 0, so with w₀ = 0 the
    estimate of L_∇ℓ is the global constant.
    """
    d = problem.d
    w0 = np.zeros(d) if w0 is None else np.asarray(w0, dtype=float)
    w_star = problem.minimize()
    region = path(w0, w_star, n_path)
    if points is not None and len(points):
        region = np.vstack([region, np.atleast_2d(points)])
    eig = np.array([np.linalg.eigvalsh(problem.hessian(w))[[0, -1]] for w in region])
    f_star = problem.loss(w_star)
    return ProblemConstants(L=float(eig[:, 1].max()), mu=float(eig[:, 0].min()), sigma2=d * noise_std**2,
                            delta0=float(problem.loss(w0) - f_star), f_star=float(f_star), w_star=w_star)


# -------------------------------------------------------------------------------------------------
# right-hand sides of (34) and (38)
# -------------------------------------------------------------------------------------------------


def rhs_nonconvex(gamma: float, T: int, K: ProblemConstants, steps: np.ndarray | None = None,
                  mse: float = 0.0, bias_sq: float = 0.0) -> dict:
    """Right-hand side of (34), term by term, for (1/T) Σ_t E‖∇ℓ(w_t)‖²:

        6Δ₀/(γT) + 6L_∇ℓγσ² + (6L_∇ℓγ/T) Σ_t E‖ũ_t − u_t‖² + (3/T) Σ_t ‖E_t[ũ_t − u_t]‖²,

    with the gradient-error moments equal to ``mse`` and ``bias_sq`` at the
    active ``steps`` and zero elsewhere.  ``valid`` says whether γ <= 1/(3L_∇ℓ).
    """
    n = 0 if steps is None else int(np.count_nonzero(np.asarray(steps) < T))
    out = dict(optimization=6 * K.delta0 / (gamma * T), sampling=6 * K.L * gamma * K.sigma2,
               error_variance=6 * K.L * gamma * n * mse / T, error_bias=3 * n * bias_sq / T)
    out["total"] = sum(out.values())
    out["valid"] = bool(gamma <= K.step_limit())
    return out


def rhs_pl(gamma: float, T: int, K: ProblemConstants, steps: np.ndarray | None = None,
           mse: float = 0.0, bias_sq: float = 0.0) -> dict:
    """Right-hand side of (38) (in the form (41)), term by term, for E[ℓ(w_T) − ℓ*]:

        q^T Δ₀ + 3L_∇ℓγσ²/μ + L_∇ℓγ² Σ_t q^{T−t} E‖ũ_t − u_t‖² + (γ/2) Σ_t q^{T−t} ‖E_t[ũ_t − u_t]‖²,

    q = 1 − μγ/3, the moments equal to ``mse``/``bias_sq`` at the active
    ``steps`` and zero elsewhere.
    """
    q = 1.0 - K.mu * gamma / 3.0
    if steps is None or len(steps) == 0:
        w_sum = 0.0
    else:
        t = np.asarray(steps, dtype=float)
        t = t[t < T]
        w_sum = float(np.sum(np.exp((T - t) * math.log(q))))
    out = dict(optimization=q**T * K.delta0, sampling=3 * K.L * gamma * K.sigma2 / K.mu,
               error_variance=K.L * gamma**2 * w_sum * mse, error_bias=0.5 * gamma * w_sum * bias_sq)
    out["total"] = sum(out.values())
    out["valid"] = bool(gamma <= K.step_limit() and K.mu > 0)
    return out
