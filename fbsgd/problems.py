"""Problems used in the book: the logistic regression of Section 7 and
linear networks for the depth experiments."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import expit

from .operators import Linear, LogisticScore, Softplus
from .passes import Composite
from .regularizers import Regularizer, get_regularizer

__all__ = ["LogisticRegression", "linear_network"]


@dataclass
class LogisticRegression:
    """min_w (1/M) Σ_l ln(1 + exp(-y_l h_lᵀ w)) + ρ R(w), eqs. (53)-(54).

    Data as in Section 7.1: x* ~ N(0, I_d), h_l ~ N(0, I_d), and
    y_l = +1 if z_l <= 1 / (1 + exp(-h_lᵀ x*)) with z_l ~ U(0, 1), else -1.
    """

    features: np.ndarray  # (M, d)
    labels: np.ndarray  # (M,) in {+1, -1}
    x_star: np.ndarray  # (d,)
    rho: float
    regularizer: Regularizer

    @classmethod
    def generate(cls, d: int = 10, M: int = 2000, rho: float = 0.001, regularizer: str = "nonconvex", data_seed: int = 0):
        if d < 1 or M < 1:
            raise ValueError(f"need d >= 1 and M >= 1, got d={d}, M={M}")
        rng = np.random.default_rng(data_seed)
        x_star = rng.standard_normal(d)
        h = rng.standard_normal((M, d))
        z = rng.uniform(0.0, 1.0, M)
        labels = np.where(z <= expit(h @ x_star), 1.0, -1.0)
        return cls(h, labels, x_star, float(rho), get_regularizer(regularizer))

    @property
    def d(self) -> int:
        return self.features.shape[1]

    @property
    def M(self) -> int:
        return self.features.shape[0]

    @cached_property
    def net(self) -> Composite:
        """The two-operator chain f₁ = -y hᵀw, f₂ = ln(1 + e^{f₁})  (N = 2)."""
        return Composite([LogisticScore(self.d), Softplus()])

    @cached_property
    def data(self) -> np.ndarray:
        """Samples packed as rows [h_l, y_l], the input format of LogisticScore."""
        return np.concatenate([self.features, self.labels[:, None]], axis=1)

    @cached_property
    def signed_features(self) -> np.ndarray:
        """a_l = y_l h_l, so that f₁ = -a_lᵀ w."""
        return self.features * self.labels[:, None]

    def loss(self, w: np.ndarray) -> float:
        z = -self.signed_features @ w
        return float(np.mean(np.logaddexp(0.0, z)) + self.rho * self.regularizer.value(w))

    def gradient(self, w: np.ndarray) -> np.ndarray:
        """Exact, unperturbed ∇f(w): the metric of Section 7."""
        a = self.signed_features
        return -(a.T @ expit(-a @ w)) / self.M + self.rho * self.regularizer.gradient(w)

    def hessian(self, w: np.ndarray) -> np.ndarray:
        a = self.signed_features
        s = expit(-a @ w)
        return (a.T * (s * (1 - s))) @ a / self.M + np.diag(self.rho * self.regularizer.hessian_diag(w))

    def minimize(self, w0: np.ndarray | None = None, tol: float = 1e-13, max_iter: int = 100) -> np.ndarray:
        """A stationary point by Newton's method (converges for the problems used here)."""
        w = np.zeros(self.d) if w0 is None else np.array(w0, dtype=float)
        for _ in range(max_iter):
            g = self.gradient(w)
            if np.linalg.norm(g) < tol:
                break
            w = w - np.linalg.solve(self.hessian(w), g)
        return w


def linear_network(widths, scale: float = 1.0, seed: int = 0):
    """A linear network f_i(y, W_i) = W_i y with the given layer widths.

    ``widths = [d_0, d_1, ..., d_{N-1}]``; the last operator maps to a scalar,
    so N = len(widths).  Each W_i is ``scale`` times a random matrix with unit
    spectral norm, hence ‖∇₁f_i‖_op = scale exactly.  Returns (net, w).
    """
    widths = list(widths) + [1]
    rng = np.random.default_rng(seed)
    ops, ws = [], []
    for d_in, d_out in zip(widths[:-1], widths[1:]):
        W = rng.standard_normal((d_out, d_in))
        W *= scale / np.linalg.norm(W, 2)
        ops.append(Linear(d_in, d_out))
        ws.append(W.ravel())
    return Composite(ops), np.concatenate(ws)
