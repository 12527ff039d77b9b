"""The two regularizers R(w) of Section 7 (used as ρ·R(w) in eq. 53).

R is parameter-only, so (as in eq. 5d) its gradient r = ∇R(w) is exact and is
added in the update step; perturbations never touch it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Regularizer", "NonconvexRegularizer", "SquaredL2", "get_regularizer"]


class Regularizer:
    name: str

    def value(self, w: np.ndarray) -> float:
        raise NotImplementedError

    def gradient(self, w: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def hessian_diag(self, w: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NonconvexRegularizer(Regularizer):
    """R(w) = Σ_j w_j² / (1 + w_j²)  (Section 7, non-convex case)."""

    name = "nonconvex"

    def value(self, w):
        w2 = w * w
        return float(np.sum(w2 / (1.0 + w2)))

    def gradient(self, w):
        return 2.0 * w / (1.0 + w * w) ** 2

    def hessian_diag(self, w):
        w2 = w * w
        return (2.0 - 6.0 * w2) / (1.0 + w2) ** 3


class SquaredL2(Regularizer):
    """R(w) = ‖w‖²  (Section 7, strongly convex case; ρR is 2ρ-strongly convex)."""

    name = "l2"

    def value(self, w):
        return float(np.dot(w, w))

    def gradient(self, w):
        return 2.0 * w

    def hessian_diag(self, w):
        return np.full_like(w, 2.0)


_REGULARIZERS = {"nonconvex": NonconvexRegularizer, "l2": SquaredL2}


def get_regularizer(name: str) -> Regularizer:
    try:
        return _REGULARIZERS[name]()
    except KeyError:
        raise ValueError(f"regularizer must be one of {sorted(_REGULARIZERS)}, got {name!r}") from None
