"""Operators f_i(y_{i-1}, w_i): the links of the chain in eq. (1b).

Every operator works on a batch of samples: an intermediate output is a
``(B, d_i)`` array, one row per sample; the weight ``w_i`` is a flat vector of
length ``weight_size`` shared by the batch.  Each operator supplies

* ``forward(y, w)``      -- f_i(y_{i-1}, w_i), eq. (4a);
* ``vjp_input(y, w, v)`` -- ∇₁f_i(y_{i-1}, w_i)ᵀ v, the backward step (4b);
* ``vjp_weight(y, w, v)`` -- ∇₂f_i(y_{i-1}, w_i)ᵀ v per sample, eq. (4c),
  a ``(B, weight_size)`` array;
* ``jvp(y, w, dy, dw)``  -- ∇₁f_i dy + ∇₂f_i dw, the forward-mode product
  used by forward gradients.

``tests/test_operators.py`` checks all three products against central finite
differences for every operator here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

__all__ = [
    "Operator",
    "Linear",
    "Sigmoid",
    "Tanh",
    "LogisticScore",
    "Softplus",
    "SquaredNorm",
    "Parameter",
    "HadamardMix",
    "QuadraticReadout",
]


def _sizes(owner, **sizes) -> None:
    """Refuse sizes that are not integers >= 1, naming the argument."""
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{type(owner).__name__} needs an integer {name} >= 1, got {v!r}")


class Operator:
    """Base class.  Subclasses set ``in_dim``, ``out_dim``, ``weight_size``."""

    in_dim: int
    out_dim: int
    weight_size: int = 0

    def forward(self, y: np.ndarray, w: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def vjp_input(self, y: np.ndarray, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def vjp_weight(self, y: np.ndarray, w: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.zeros((y.shape[0], 0))

    def jvp(self, y, w, dy, dw) -> np.ndarray:
        raise NotImplementedError

    def init_weight(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(self.weight_size)

    def check_input(self, x: np.ndarray, where: str) -> None:
        """Refuse data this operator's formula does not define (a ValueError naming ``where``).

        Called once per data set by the entry points (:func:`fbsgd.optimizers.train`), never per
        pass; the shape is checked by :func:`fbsgd.passes.check_data`.  Any finite input is fine here.
        """

    def __repr__(self) -> str:  # compact, used in figure labels and errors
        return f"{type(self).__name__}({self.in_dim}->{self.out_dim})"


@dataclass(repr=False)
class Linear(Operator):
    """f(y, W) = W y with W of shape (out_dim, in_dim), stored row-major in w."""

    in_dim: int
    out_dim: int

    def __post_init__(self):
        _sizes(self, in_dim=self.in_dim, out_dim=self.out_dim)
        self.weight_size = self.in_dim * self.out_dim

    def _W(self, w):
        return w.reshape(self.out_dim, self.in_dim)

    def forward(self, y, w):
        return y @ self._W(w).T

    def vjp_input(self, y, w, v):
        return v @ self._W(w)

    def vjp_weight(self, y, w, v):
        return (v[:, :, None] * y[:, None, :]).reshape(y.shape[0], -1)

    def jvp(self, y, w, dy, dw):
        return dy @ self._W(w).T + y @ self._W(dw).T

    def init_weight(self, rng):
        return rng.standard_normal(self.weight_size) / np.sqrt(self.in_dim)


@dataclass(repr=False)
class _Elementwise(Operator):
    """Weight-free elementwise map y -> g(y)."""

    dim: int = 1

    def __post_init__(self):
        _sizes(self, dim=self.dim)
        self.in_dim = self.out_dim = self.dim
        self.weight_size = 0

    def g(self, y):
        raise NotImplementedError

    def dg(self, y):
        raise NotImplementedError

    def forward(self, y, w):
        return self.g(y)

    def vjp_input(self, y, w, v):
        return v * self.dg(y)

    def jvp(self, y, w, dy, dw):
        return self.dg(y) * dy


class Sigmoid(_Elementwise):
    """σ(y) = 1 / (1 + e^{-y}); σ' = σ(1 - σ)."""

    def g(self, y):
        return expit(y)

    def dg(self, y):
        s = expit(y)
        return s * (1.0 - s)


class Tanh(_Elementwise):
    """tanh(y); tanh' = 1 - tanh²."""

    def g(self, y):
        return np.tanh(y)

    def dg(self, y):
        return 1.0 - np.tanh(y) ** 2


class Softplus(_Elementwise):
    """f₂ of eq. (54): ln(1 + e^z), whose derivative is σ(z)."""

    def g(self, y):
        return np.logaddexp(0.0, y)

    def dg(self, y):
        return expit(y)


@dataclass(repr=False)
class SquaredNorm(Operator):
    """Weight-free scalar readout c‖y‖² (default c = ½; Appendix A.2 uses c = 1)."""

    in_dim: int
    coef: float = 0.5

    def __post_init__(self):
        _sizes(self, in_dim=self.in_dim)
        if not np.isfinite(self.coef):
            raise ValueError(f"SquaredNorm needs a finite coef, got {self.coef!r}")
        self.out_dim = 1
        self.weight_size = 0

    def forward(self, y, w):
        return self.coef * np.sum(y * y, axis=1, keepdims=True)

    def vjp_input(self, y, w, v):
        return v * 2.0 * self.coef * y

    def jvp(self, y, w, dy, dw):
        return 2.0 * self.coef * np.sum(y * dy, axis=1, keepdims=True)


@dataclass(repr=False)
class Parameter(Operator):
    """f(y, w) = w for every sample: the weight itself enters the chain.

    With ``SquaredNorm`` after it, this is the scalar problem of Appendix A.2.
    """

    out_dim: int
    in_dim: int = 1

    def __post_init__(self):
        _sizes(self, out_dim=self.out_dim, in_dim=self.in_dim)
        self.weight_size = self.out_dim

    def forward(self, y, w):
        return np.broadcast_to(w, (y.shape[0], self.out_dim)).copy()

    def vjp_input(self, y, w, v):
        return np.zeros((y.shape[0], self.in_dim))

    def vjp_weight(self, y, w, v):
        return v.copy()

    def jvp(self, y, w, dy, dw):
        return np.broadcast_to(dw, (y.shape[0], self.out_dim)).copy()


@dataclass(repr=False)
class LogisticScore(Operator):
    """f₁ of eq. (54): f₁(w; (h, y)) = -y hᵀw.

    A sample is packed as one row ``[h_1, ..., h_d, label]`` with label ±1,
    so the operator's input dimension is ``d + 1`` and its output a scalar.
    """

    d: int

    def __post_init__(self):
        _sizes(self, d=self.d)
        self.in_dim = self.d + 1
        self.out_dim = 1
        self.weight_size = self.d

    def check_input(self, x, where):
        """The last column holds the labels of eq. (53): +1 or -1 (0/1 labels would make a
        different loss without a word)."""
        lab = x[:, -1]
        bad = ~((lab == 1.0) | (lab == -1.0))
        if bad.any():
            found = ", ".join(f"{v:g}" for v in np.unique(lab[bad])[:5])
            hint = "; convert 0/1 labels with 2*y - 1" if np.isin(lab, (0.0, 1.0)).all() else ""
            raise ValueError(f"{where}: the last column of each row is {self!r}'s label and must be +1 or -1; "
                             f"{int(bad.sum())} of {lab.size} are not (values found: {found}){hint}")

    def forward(self, x, w):
        h, lab = x[:, :-1], x[:, -1:]
        return -lab * (h @ w)[:, None]

    def vjp_input(self, x, w, v):
        h, lab = x[:, :-1], x[:, -1:]
        dh = -lab * v * w[None, :]
        dlab = -v * (h @ w)[:, None]
        return np.concatenate([dh, dlab], axis=1)

    def vjp_weight(self, x, w, v):
        h, lab = x[:, :-1], x[:, -1:]
        return -(lab * v) * h

    def jvp(self, x, w, dx, dw):
        h, lab = x[:, :-1], x[:, -1:]
        dh, dlab = dx[:, :-1], dx[:, -1:]
        return -lab * ((dh @ w) + (h @ dw))[:, None] - dlab * (h @ w)[:, None]


@dataclass(repr=False)
class HadamardMix(Operator):
    """f₁ of Appendix A.3: f₁(x, w₁) = A (x ⊙ w₁)."""

    A: np.ndarray = field(default_factory=lambda: np.eye(2))

    def __post_init__(self):
        self.A = np.asarray(self.A, dtype=float)
        if self.A.ndim != 2 or self.A.size == 0 or not np.all(np.isfinite(self.A)):
            raise ValueError(f"HadamardMix needs a non-empty finite matrix A, got shape {self.A.shape}")
        self.out_dim, self.in_dim = self.A.shape
        self.weight_size = self.in_dim

    def forward(self, x, w):
        return (x * w) @ self.A.T

    def vjp_input(self, x, w, v):
        return (v @ self.A) * w

    def vjp_weight(self, x, w, v):
        return (v @ self.A) * x

    def jvp(self, x, w, dx, dw):
        return (dx * w + x * dw) @ self.A.T


@dataclass(repr=False)
class QuadraticReadout(Operator):
    """f₂ of Appendix A.3: f₂(y₁, w₂) = ⟨y₁, w₂⟩² + ½‖y₁‖²."""

    in_dim: int = 2

    def __post_init__(self):
        _sizes(self, in_dim=self.in_dim)
        self.out_dim = 1
        self.weight_size = self.in_dim

    def forward(self, y, w):
        return (y @ w)[:, None] ** 2 + 0.5 * np.sum(y * y, axis=1, keepdims=True)

    def vjp_input(self, y, w, v):
        return v * (2.0 * (y @ w)[:, None] * w[None, :] + y)

    def vjp_weight(self, y, w, v):
        return v * 2.0 * (y @ w)[:, None] * y

    def jvp(self, y, w, dy, dw):
        s = (y @ w)[:, None]
        return 2.0 * s * ((dy @ w) + (y @ dw))[:, None] + np.sum(y * dy, axis=1, keepdims=True)
