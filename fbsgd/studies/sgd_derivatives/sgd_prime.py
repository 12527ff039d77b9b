"""Derivatives of SGD (SGD′) on a parametric least-squares problem.

The problem (Iutzeler, Pauwels, Vaiter, 2024, "Derivatives of Stochastic Gradient Descent in
Parametric Optimization", NeurIPS; the experiments of their poster, "the poster" below) is

    x*(θ) = argmin_x F(x, θ) = (1/m) Σ_ξ φ(a_ξᵀx − b(θ)_ξ),      φ(r) = r²/2 + β ln cosh r,

with β = 0 the ordinary least squares of the poster.  β > 0 (``curvature``)
keeps the problem strongly convex and smooth but makes the Hessian depend on
x, which is what makes SGD′ an *inexact* SGD (below).

Three settings of the poster (``setting``):

* ``"general"``              θ ∈ ℝᵐ, b(θ) = θ (residuals at x* do not vanish);
* ``"simple_interpolation"`` θ = Aζ for some ζ ∈ ℝᵈ, b(θ) = θ; the derivative
  is still taken with respect to θ ∈ ℝᵐ ("no autodiff through θ = Aζ"):
  the residuals vanish at x*, but the per-sample derivative residuals do not;
* ``"double_interpolation"`` θ ∈ ℝᵈ, b(θ) = Aθ: x*(θ) = θ, ∂θx* = I, and both
  kinds of residual vanish.

SGD and its derivative with respect to θ (forward-mode through the unrolled
iterations, D_k = ∂θ x_k):

    x_{k+1} = x_k − η_k φ′(r_k) a,                     r_k = aᵀx_k − b_ξ(θ),
    D_{k+1} = D_k − η_k φ″(r_k) a (aᵀD_k − ∂θb_ξ),      ξ = ξ_{k+1} uniform on 1..m.

The limit is the implicit-function Jacobian ∂θx* = −[∇²ₓₓF]⁻¹ ∇²ₓθF; for
β = 0 it is the closed form (AᵀA)⁻¹Aᵀ ∂θb.  Rewriting the Hessians at x*
instead of x_k gives the poster's decomposition

    D_{k+1} = D_k − η_k [∇²ₓₓf(x*, ξ) D_k + ∇²ₓθf(x*, ξ)] + e_{k+1},
    e_{k+1} = η_k (φ″(r*_ξ) − φ″(r_{k,ξ})) a (aᵀD_k − ∂θb_ξ):

an SGD on the quadratic problem (Opt′) whose minimizer is ∂θx*, plus an
error e_{k+1}.  For β = 0 the Hessians do not depend on x and e ≡ 0.  For
β > 0 the error is what a *forward* perturbation δ_k = x_k − x* of the
point at which the Jacobians are evaluated does in the paper's eq. (5):
the Jacobians of the chain are taken at ỹ = x* + δ_k instead of at x*.

The kernels are compiled with numba and read the sample indices from the
counter-based streams of :mod:`fbsgd.rng`.  For β = 0 the exact first and
second moments of the error are available (:func:`expected_error`), which
the chapter uses as predictions.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit

from fbsgd import rng

__all__ = [
    "SETTINGS",
    "ParametricLeastSquares",
    "constant_steps",
    "decreasing_steps",
    "checkpoints",
    "run_sgd_prime",
    "sgd_prime_reference",
    "unrolled_iterate",
    "sample_indices",
    "moment_operator",
    "stationary_error",
    "second_moment_rate",
    "expected_error",
]

SETTINGS = ("general", "simple_interpolation", "double_interpolation")


# --------------------------------------------------------------------------
# φ and its derivatives
# --------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _phi1(r, beta):
    return r + beta * np.tanh(r)


@njit(inline="always", cache=True)
def _phi2(r, beta):
    c = np.cosh(r)
    return 1.0 + beta / (c * c)


def _phi(r, beta):
    return 0.5 * r * r + beta * (np.logaddexp(r, -r) - np.log(2.0))


# --------------------------------------------------------------------------
# The problem
# --------------------------------------------------------------------------


@dataclass
class ParametricLeastSquares:
    """F(x, θ) = (1/m) Σ_ξ φ(a_ξᵀx − b(θ)_ξ) at a fixed parameter θ."""

    A: np.ndarray  # (m, d)
    theta: np.ndarray  # (p,)
    setting: str = "general"
    curvature: float = 0.0  # β
    zeta: np.ndarray | None = None  # simple interpolation: θ = Aζ

    def __post_init__(self):
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {SETTINGS}, got {self.setting!r}")
        if self.curvature < 0:
            raise ValueError(f"curvature must be >= 0, got {self.curvature}")
        self.A = np.asarray(self.A, dtype=float)
        self.theta = np.asarray(self.theta, dtype=float)
        want = self.d if self.setting == "double_interpolation" else self.m
        if self.theta.shape != (want,):
            raise ValueError(f"setting {self.setting!r} needs theta of shape ({want},), got {self.theta.shape}")

    @classmethod
    def generate(cls, d: int = 5, m: int = 50, setting: str = "general", curvature: float = 0.0, data_seed: int = 0):
        """a_ξ ~ N(0, I_d); θ ~ N(0, I_m) (general), θ = Aζ with ζ ~ N(0, I_d)
        (simple interpolation), or θ ~ N(0, I_d) (double interpolation)."""
        if not 1 <= d <= m:
            raise ValueError(f"need 1 <= d <= m, got d={d}, m={m}")
        r = np.random.default_rng(data_seed)
        A = r.standard_normal((m, d))
        zeta = None
        if setting == "general":
            theta = r.standard_normal(m)
        elif setting == "simple_interpolation":
            zeta = r.standard_normal(d)
            theta = A @ zeta
        elif setting == "double_interpolation":
            theta = r.standard_normal(d)
        else:
            raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
        return cls(A, theta, setting, float(curvature), zeta)

    # sizes and the parameterization b(θ)
    @property
    def m(self) -> int:
        return self.A.shape[0]

    @property
    def d(self) -> int:
        return self.A.shape[1]

    @property
    def p(self) -> int:
        return self.theta.size

    @cached_property
    def db(self) -> np.ndarray:
        """∂θ b, shape (m, p): the identity, or A for b(θ) = Aθ."""
        return self.A.copy() if self.setting == "double_interpolation" else np.eye(self.m)

    def b(self, theta=None) -> np.ndarray:
        theta = self.theta if theta is None else np.asarray(theta, dtype=float)
        return self.A @ theta if self.setting == "double_interpolation" else theta

    # F and its derivatives in x
    def residuals(self, x, theta=None):
        return self.A @ x - self.b(theta)

    def loss(self, x, theta=None) -> float:
        return float(np.mean(_phi(self.residuals(x, theta), self.curvature)))

    def grad_x(self, x, theta=None):
        r = self.residuals(x, theta)
        return self.A.T @ _phi1(r, self.curvature) / self.m

    def hess_xx(self, x):
        h = _phi2(self.residuals(x), self.curvature)
        return (self.A.T * h) @ self.A / self.m

    def cross_xtheta(self, x):
        """∇²ₓθF(x, θ) = −(1/m) Aᵀ diag(φ″(r)) ∂θb, shape (d, p)."""
        h = _phi2(self.residuals(x), self.curvature)
        return -(self.A.T * h) @ self.db / self.m

    @cached_property
    def x_star(self) -> np.ndarray:
        """x*(θ): the least-squares solution, refined by Newton's method when β > 0."""
        x = np.linalg.lstsq(self.A, self.b(), rcond=None)[0]
        for _ in range(100):
            if self.curvature == 0.0:
                break
            step = np.linalg.solve(self.hess_xx(x), self.grad_x(x))
            x = x - step
            if np.linalg.norm(step) < 1e-15 * (1 + np.linalg.norm(x)):
                break
        return x

    @cached_property
    def jacobian_star(self) -> np.ndarray:
        """∂θx*(θ) = −[∇²ₓₓF]⁻¹ ∇²ₓθF at x*; for β = 0, (AᵀA)⁻¹Aᵀ ∂θb."""
        if self.curvature == 0.0:
            return np.linalg.solve(self.A.T @ self.A, self.A.T @ self.db)
        return -np.linalg.solve(self.hess_xx(self.x_star), self.cross_xtheta(self.x_star))

    def solve_x(self, theta) -> np.ndarray:
        """x*(θ') at another parameter (for finite-difference checks of ∂θx*)."""
        other = ParametricLeastSquares(self.A, theta, self.setting, self.curvature)
        return other.x_star

    # constants of the poster's assumptions
    @cached_property
    def constants(self) -> dict:
        """μ (smallest eigenvalue of ∇²ₓₓF at x*), L (largest per-sample
        smoothness (1 + β) max‖a_ξ‖²), κ = L/μ, M (Lipschitz constant of the
        per-sample Hessian in x), and the two variances at the solution:
        σ²_x = E‖∇ₓf(x*; ξ)‖² and σ²_D = E‖∇²ₓₓf D* + ∇²ₓθf‖²."""
        beta = self.curvature
        A, D = self.A, self.jacobian_star
        r = self.residuals(self.x_star)
        row2 = np.sum(A * A, axis=1)
        mu = float(np.linalg.eigvalsh(self.hess_xx(self.x_star))[0])
        L = float((1 + beta) * row2.max())
        M = float(beta * 4 / (3 * np.sqrt(3)) * row2.max() ** 1.5)  # max|φ‴| = 4β/(3√3)
        g = A @ D - self.db  # rows: a_ξᵀD* − ∂θb_ξ
        h = _phi2(r, beta)
        sigma2_x = float(np.mean(_phi1(r, beta) ** 2 * row2))
        sigma2_D = float(np.mean(h**2 * row2 * np.sum(g * g, axis=1)))
        return dict(mu=mu, L=L, kappa=L / mu, M=M, sigma2_x=sigma2_x, sigma2_D=sigma2_D,
                    norm_D_star=float(np.linalg.norm(D)))


# --------------------------------------------------------------------------
# Step sizes and sampling
# --------------------------------------------------------------------------


def constant_steps(eta: float, K: int) -> np.ndarray:
    return np.full(int(K), float(eta))


def decreasing_steps(mu: float, offset: float, K: int) -> np.ndarray:
    """η_k = 2 / (μ (k + offset)), k = 0..K−1: the poster's schedule
    (1/μ)·2/(k + 8κ²) when offset = 8κ²."""
    return 2.0 / (mu * (np.arange(int(K)) + float(offset)))


def checkpoints(K: int, n_log: int = 120, n_lin: int = 120) -> np.ndarray:
    """Iterations at which a run is recorded: log-spaced and evenly spaced, with 0 and K."""
    ks = np.concatenate([[0, K], np.geomspace(1, max(K, 1), n_log), np.linspace(0, K, n_lin)])
    return np.unique(np.clip(np.round(ks), 0, K).astype(np.int64))


def sample_key(seed: int) -> int:
    return rng.derive_key("fbsgd.sgd_derivatives.samples", int(seed))


@njit(cache=True)
def _index(key, k, m):
    i = int(rng.uniform01_scalar(key, k, 0) * m)
    return min(i, m - 1)


def sample_indices(seed: int, K: int, m: int) -> np.ndarray:
    """ξ_1, ..., ξ_K of the run with this seed (the same the compiled kernel reads)."""
    key = np.uint64(sample_key(seed))
    return np.array([_index(key, k, m) for k in range(K)], dtype=np.int64)


# --------------------------------------------------------------------------
# The compiled run: SGD and SGD′ together, with the error term measured
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)  # nogil: run_sgd_prime runs the seeds on threads
def _kernel(A, b, db, beta, x_star, D_star, h_star, etas, key, x0, D0, ck, out):
    m, d = A.shape
    p = db.shape[1]
    K = etas.shape[0]
    x = x0.copy()
    D = D0.copy()
    c = np.empty(p)
    mean = np.empty((d, p))
    j = 0
    e_max = 0.0
    for k in range(K + 1):
        if j < ck.shape[0] and ck[j] == k:
            out[j, 0] = np.sum((x - x_star) ** 2)
            out[j, 1] = np.sum((D - D_star) ** 2)
            # conditional moments of e_{k+1} / η_k over ξ (exact, all m samples)
            mean[:, :] = 0.0
            sq = 0.0
            if beta != 0.0:
                for s in range(m):
                    a = A[s]
                    dh = h_star[s] - _phi2(a @ x - b[s], beta)
                    c[:] = a @ D - db[s]
                    mean += dh * np.outer(a, c)
                    sq += dh * dh * (a @ a) * (c @ c)
            out[j, 2] = np.sqrt(sq / m)
            out[j, 3] = np.sqrt(np.sum(mean * mean)) / m
            out[j, 4] = np.sqrt(np.sum(D * D))
            j += 1
        if k == K:
            break
        # one step of SGD and SGD′, written as loops (no temporaries: this is the hot loop)
        eta = etas[k]
        s = _index(key, k, m)
        r = -b[s]
        aa = 0.0
        for i in range(d):
            r += A[s, i] * x[i]
            aa += A[s, i] * A[s, i]
        h = _phi2(r, beta)
        cc = 0.0
        for q in range(p):
            acc = -db[s, q]
            for i in range(d):
                acc += A[s, i] * D[i, q]
            c[q] = acc
            cc += acc * acc
        e = abs(eta * (h_star[s] - h)) * np.sqrt(aa) * np.sqrt(cc)  # ‖e_{k+1}‖ of this step
        if e > e_max:
            e_max = e
        g = eta * _phi1(r, beta)
        eh = eta * h
        for i in range(d):
            x[i] -= g * A[s, i]
            ai = eh * A[s, i]
            for q in range(p):
                D[i, q] -= ai * c[q]
    return e_max


RECORDED = ("x_err2", "D_err2", "eps_rms", "eps_bias", "D_norm")


def run_sgd_prime(problem: ParametricLeastSquares, etas: np.ndarray, seeds, ck: np.ndarray, x0=None, D0=None) -> dict:
    """Run SGD and SGD′ with step sizes ``etas`` for each seed; record at the iterations ``ck``.

    Returns a dict with arrays of shape (len(seeds), len(ck)):

    * ``x_err2``  ‖x_k − x*‖²,   ``D_err2``  ‖D_k − ∂θx*‖² (Frobenius),
    * ``eps_rms``  (E_k‖e_{k+1}‖²)^{1/2} / η_k, ``eps_bias``  ‖E_k e_{k+1}‖ / η_k —
      the conditional RMS and mean of the error term at gradient scale,
      computed exactly over the m samples (zero when β = 0),
    * ``D_norm``  ‖D_k‖,

    plus ``e_max``: the largest ‖e_{k+1}‖ met along each run, shape (len(seeds),).
    The starting point is x_0 = 0 and D_0 = 0 unless given (x_0 does not depend on θ).
    """
    etas = np.ascontiguousarray(etas, dtype=float)
    ck = np.ascontiguousarray(ck, dtype=np.int64)
    if ck.size and (ck.min() < 0 or ck.max() > etas.size or np.any(np.diff(ck) <= 0)):
        raise ValueError("checkpoints must be increasing iterations in [0, len(etas)]")
    x0 = np.zeros(problem.d) if x0 is None else np.asarray(x0, dtype=float)
    D0 = np.zeros((problem.d, problem.p)) if D0 is None else np.asarray(D0, dtype=float)
    h_star = _phi2(problem.residuals(problem.x_star), problem.curvature)
    seeds = list(seeds)
    out = np.empty((len(seeds), ck.size, len(RECORDED)))
    e_max = np.empty(len(seeds))
    args = (problem.A, problem.b(), np.ascontiguousarray(problem.db), float(problem.curvature), problem.x_star,
            np.ascontiguousarray(problem.jacobian_star), h_star, etas)

    def one(i):  # seed i writes only out[i] and e_max[i]: the same bits whatever the number of threads
        e_max[i] = _kernel(*args, np.uint64(sample_key(seeds[i])), x0, D0, ck, out[i])

    with ThreadPoolExecutor(max_workers=min(len(seeds), os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(seeds))))
    res = {name: out[:, :, j] for j, name in enumerate(RECORDED)}
    res["e_max"] = e_max
    res["k"] = ck
    return res


# --------------------------------------------------------------------------
# Plain numpy references (used by the tests)
# --------------------------------------------------------------------------


def unrolled_iterate(problem: ParametricLeastSquares, theta, etas, xis, x0=None) -> np.ndarray:
    """x_K(θ) after the SGD steps with the given step sizes and sample indices."""
    x = np.zeros(problem.d) if x0 is None else np.array(x0, dtype=float)
    b = problem.b(theta)
    for eta, s in zip(etas, xis):
        a = problem.A[s]
        x = x - eta * _phi1(a @ x - b[s], problem.curvature) * a
    return x


def sgd_prime_reference(problem: ParametricLeastSquares, etas, xis, x0=None, D0=None):
    """SGD and SGD′ in plain numpy, written with the poster's Hessians.

    Returns ``(xs, Ds, es)``: iterates x_0..x_K, Jacobians D_0..D_K and the
    error terms e_1..e_K of the rewrite
    D_{k+1} = D_k − η_k[∇²ₓₓf(x*)D_k + ∇²ₓθf(x*)] + e_{k+1}.
    """
    beta = problem.curvature
    x = np.zeros(problem.d) if x0 is None else np.array(x0, dtype=float)
    D = np.zeros((problem.d, problem.p)) if D0 is None else np.array(D0, dtype=float)
    b, db, xs_ = problem.b(), problem.db, problem.x_star
    xs, Ds, es = [x.copy()], [D.copy()], []
    for eta, s in zip(etas, xis):
        a = problem.A[s]
        hxx = lambda z: _phi2(a @ z - b[s], beta) * np.outer(a, a)  # noqa: E731
        hxt = lambda z: -_phi2(a @ z - b[s], beta) * np.outer(a, db[s])  # noqa: E731
        D_new = D - eta * (hxx(x) @ D + hxt(x))
        es.append(eta * (hxx(xs_) - hxx(x)) @ D + eta * (hxt(xs_) - hxt(x)))
        x = x - eta * _phi1(a @ x - b[s], beta) * a
        D = D_new
        xs.append(x.copy())
        Ds.append(D.copy())
    return np.array(xs), np.array(Ds), np.array(es)


# --------------------------------------------------------------------------
# Exact moments for β = 0 (the poster's ordinary least squares)
# --------------------------------------------------------------------------


def _noise_rows(problem: ParametricLeastSquares, which: str) -> np.ndarray:
    """Rows g_ξ of the additive noise: M_{k+1} = (I − η a aᵀ) M_k − η a g_ξᵀ."""
    if problem.curvature != 0.0:
        raise ValueError("exact moments are available for curvature = 0 (ordinary least squares) only")
    if which == "x":
        return problem.residuals(problem.x_star)[:, None]
    if which == "D":
        return problem.A @ problem.jacobian_star - problem.db
    raise ValueError("which must be 'x' or 'D'")


def moment_operator(A: np.ndarray, eta: float) -> np.ndarray:
    """The d²×d² matrix of S ↦ E_ξ[(I − η a aᵀ) S (I − η a aᵀ)] on row-major vec(S)."""
    m, d = A.shape
    T = np.zeros((d * d, d * d))
    for a in A:
        P = np.eye(d) - eta * np.outer(a, a)
        T += np.kron(P, P)
    return T / m


def second_moment_rate(A: np.ndarray, eta: float) -> float:
    """Spectral radius of :func:`moment_operator`: the exact per-step factor of
    E‖M_k‖² when there is no additive noise (interpolation)."""
    return float(np.max(np.abs(np.linalg.eigvals(moment_operator(A, eta)))))


def stationary_error(problem: ParametricLeastSquares, eta: float, which: str = "D") -> float:
    """lim_k E‖M_k‖² for a constant step η (M = D − ∂θx* or x − x*), β = 0.

    Solves S = T_η(S) + η² E[‖g_ξ‖² a aᵀ]; the cross term vanishes in the limit
    because E[M_k] → 0.  Infinite if T_η is not a contraction."""
    A, G = problem.A, _noise_rows(problem, which)
    d = problem.d
    T = moment_operator(A, eta)
    if np.max(np.abs(np.linalg.eigvals(T))) >= 1:
        return float("inf")
    N = (A.T * np.sum(G * G, axis=1)) @ A / problem.m
    S = np.linalg.solve(np.eye(d * d) - T, eta**2 * N.ravel()).reshape(d, d)
    return float(np.trace(S))


@njit(cache=True)
def _moments(A, G, Q0, etas, ck, out):
    """The recursions of :func:`expected_error` on P = E[M Mᵀ] (d×d) and on U = E[M] Gᵀ (d×m)
    instead of E[M] itself: U_{k+1} = (I − η Σ) U_k, so a step costs O(m d²), not O(m d p)."""
    m, d = A.shape
    Sigma = A.T @ A / m
    P = Q0 @ Q0.T
    U = Q0 @ G.T  # column ξ: E[M_k] g_ξ
    gg = np.empty(m)
    for s in range(m):
        gg[s] = G[s] @ G[s]
    N = (A.T * gg) @ A / m  # E[‖g_ξ‖² a aᵀ]
    TP = np.empty((d, d))
    SP = np.empty((d, d))
    X = np.empty((d, d))
    SU = np.empty((d, m))
    wts = np.empty(m)
    sdot = np.empty(m)
    j = 0
    for k in range(etas.shape[0] + 1):
        if j < ck.shape[0] and ck[j] == k:
            out[j] = np.trace(P)
            j += 1
        if k == etas.shape[0]:
            break
        eta = etas[k]
        # w_ξ = a_ξᵀ P a_ξ and s_ξ = a_ξᵀ U[:, ξ]
        for s in range(m):
            acc = 0.0
            acc2 = 0.0
            for a in range(d):
                acc2 += A[s, a] * U[a, s]
                for b in range(d):
                    acc += A[s, a] * P[a, b] * A[s, b]
            wts[s] = acc
            sdot[s] = acc2
        for a in range(d):
            for b in range(d):
                acc = 0.0
                for c in range(d):
                    acc += Sigma[a, c] * P[c, b]
                SP[a, b] = acc
        # X = (1/m) Σ_ξ [U[:, ξ] a_ξᵀ − η s_ξ a_ξ a_ξᵀ];  T(P) = P − η(ΣP + PΣ) + η² E[(aᵀPa) a aᵀ]
        for a in range(d):
            for b in range(d):
                x = 0.0
                t = 0.0
                for s in range(m):
                    x += (U[a, s] - eta * sdot[s] * A[s, a]) * A[s, b]
                    t += wts[s] * A[s, a] * A[s, b]
                X[a, b] = x / m
                TP[a, b] = P[a, b] - eta * (SP[a, b] + SP[b, a]) + eta * eta * t / m
        for a in range(d):
            for b in range(d):
                P[a, b] = TP[a, b] - eta * (X[a, b] + X[b, a]) + eta * eta * N[a, b]
        for a in range(d):
            for s in range(m):
                acc = 0.0
                for c in range(d):
                    acc += Sigma[a, c] * U[c, s]
                SU[a, s] = acc
        for a in range(d):
            for s in range(m):
                U[a, s] -= eta * SU[a, s]
    return out


def expected_error(problem: ParametricLeastSquares, etas, ck, which: str = "D", M0=None) -> np.ndarray:
    """Exact E‖M_k‖² at the iterations ``ck`` for β = 0, by the recursions
    of the first and second moments:

        E[M_{k+1}] = (I − η_k Σ) E[M_k],
        E[M_{k+1}M_{k+1}ᵀ] = T_{η_k}(E[M_k M_kᵀ]) − η_k(X_k + X_kᵀ) + η_k² E[‖g_ξ‖² a aᵀ],
        X_k = E_ξ[(I − η_k a aᵀ) E[M_k] g_ξ a_ξᵀ],

    with M_0 = D_0 − ∂θx* = −∂θx* (or x_0 − x* = −x*) unless given."""
    G = np.ascontiguousarray(_noise_rows(problem, which))
    if M0 is None:
        M0 = -(problem.jacobian_star if which == "D" else problem.x_star[:, None])
    M0 = np.ascontiguousarray(np.atleast_2d(np.asarray(M0, dtype=float).reshape(problem.d, -1)))
    ck = np.ascontiguousarray(ck, dtype=np.int64)
    out = np.empty(ck.size)
    return _moments(np.ascontiguousarray(problem.A), G, M0, np.ascontiguousarray(etas, dtype=float), ck, out)
