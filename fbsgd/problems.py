"""Problems used in the book: the logistic regression of Section 7 and
linear networks for the depth experiments."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import expit

from fbsgd.operators import Linear, LogisticScore, Softplus
from fbsgd.passes import Composite, _real_array
from fbsgd.regularizers import Regularizer, get_regularizer

__all__ = ["LogisticRegression", "linear_network"]


def _need_int(who: str, name: str, v, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise ValueError(f"{who}: {name} must be an integer >= {lo}, got {v!r}")


def _need_real(who: str, name: str, v, lo: float | None = None) -> None:
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (lo is not None and v < lo):
        rule = "" if lo is None else f" >= {lo:g}"
        raise ValueError(f"{who}: {name} must be a finite number{rule}, got {v!r}")


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

    def __post_init__(self):
        """Refuse data the problem is not defined for, naming the field (once, when the problem is built)."""
        who = "LogisticRegression"
        h = _real_array(self.features, who, "features")
        if h.ndim != 2 or h.shape[0] == 0 or h.shape[1] == 0:
            raise ValueError(f"{who}: features must be a 2-D array (M samples, d features) with M >= 1 and d >= 1, "
                             f"got shape {h.shape}")
        M, d = h.shape
        y = _real_array(self.labels, who, "labels")
        if y.shape != (M,):
            raise ValueError(f"{who}: labels must be a 1-D array with one label per row of features ({M}), got shape {y.shape}")
        x_star = _real_array(self.x_star, who, "x_star")
        if x_star.shape != (d,):
            raise ValueError(f"{who}: x_star must be a 1-D array of length d = {d}, got shape {x_star.shape}")
        for name, a in (("features", h), ("x_star", x_star)):
            if not np.isfinite(a).all():
                raise ValueError(f"{who}: {name} has {int(a.size - np.isfinite(a).sum())} non-finite entries (NaN or inf)")
        bad = ~((y == 1) | (y == -1))
        if bad.any():
            hint = "; convert 0/1 labels with 2*y - 1" if np.isin(y, (0, 1)).all() else ""
            raise ValueError(f"{who}: labels must be +1 or -1 (eq. 53); {int(bad.sum())} of {M} are not (values found: "
                             f"{', '.join(f'{v:g}' for v in np.unique(y[bad])[:5])}){hint}")
        _need_real(who, "rho", self.rho, 0.0)
        if isinstance(self.regularizer, str):  # a name is as good as the object
            self.regularizer = get_regularizer(self.regularizer)
        if not isinstance(self.regularizer, Regularizer):
            raise ValueError(f"{who}: regularizer must be a Regularizer or one of the names 'nonconvex', 'l2', "
                             f"got {type(self.regularizer).__name__}")
        # arrays kept as given when they are float arrays already (generate's are: bits unchanged)
        self.features, self.labels, self.x_star = (np.asarray(a, dtype=float) for a in (h, y, x_star))

    @classmethod
    def generate(cls, d: int = 10, M: int = 2000, rho: float = 0.001, regularizer: str = "nonconvex", data_seed: int = 0):
        who = "LogisticRegression.generate"
        _need_int(who, "d", d, 1)
        _need_int(who, "M", M, 1)
        _need_real(who, "rho", rho, 0.0)
        _need_int(who, "data_seed", data_seed, 0)
        reg = get_regularizer(regularizer)  # a bad name is refused before anything is drawn
        rng = np.random.default_rng(data_seed)
        x_star = rng.standard_normal(d)
        h = rng.standard_normal((M, d))
        z = rng.uniform(0.0, 1.0, M)
        labels = np.where(z <= expit(h @ x_star), 1.0, -1.0)
        return cls(h, labels, x_star, float(rho), reg)

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
    who = "linear_network"
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise ValueError(f"{who}: widths must be a list of integers >= 1 (d_0, ..., d_(N-1)), got {widths!r}")
    widths = list(widths)
    if not widths:
        raise ValueError(f"{who}: widths must hold at least one width (d_0), got []")
    for k, v in enumerate(widths):
        _need_int(who, f"widths[{k}]", v, 1)
    _need_real(who, "scale", scale)
    _need_int(who, "seed", seed, 0)
    widths = widths + [1]
    rng = np.random.default_rng(seed)
    ops, ws = [], []
    for d_in, d_out in zip(widths[:-1], widths[1:]):
        W = rng.standard_normal((d_out, d_in))
        W *= scale / np.linalg.norm(W, 2)
        ops.append(Linear(d_in, d_out))
        ws.append(W.ravel())
    return Composite(ops), np.concatenate(ws)
