"""Forward gradients (Baydin et al., 2022) as a perturbation of the backward pass.

The estimator
-------------
For a loss ℓ(w) with w ∈ ℝⁿ and a random direction v ~ N(0, Iₙ), the
*forward gradient* is

    g(w; v) = (∇ℓ(w)·v) v.

The scalar ∇ℓ(w)·v is a directional derivative: one forward-mode sweep
through the chain computes it together with the loss, carrying a tangent
dy_i = ∇₁f_i dy_{i−1} + ∇₂f_i dw_i next to each intermediate output y_i
(:func:`jvp_pass`).  No backward pass runs and no intermediate output has to
be stored.

How it fits the paper's perturbed passes
----------------------------------------
Write the exact (sample) weight gradient u = ∇ℓ(w).  Then

    g = u + ε_fg,   ε_fg := (v vᵀ − I) u.

* ε_fg has conditional mean zero, because E[v vᵀ] = I: the estimator is
  **unbiased**, so the bias terms of Theorem 2 vanish.
* Its size is large: for Gaussian v, E[v vᵀ A v vᵀ] = tr(A) I + 2A gives
  E[g gᵀ] = ‖u‖² I + 2 u uᵀ, hence

      E‖g‖² = (n + 2)‖u‖²,   E‖g − u‖² = (n + 1)‖u‖²,

  and an average of K independent forward gradients has K times less.
  This is the term E‖ũ − u‖² of Theorem 3 (its "variance term"): a
  frequent, zero-mean error of size O(‖u‖) at every step — the kind that
  Corollary 1 tolerates without losing the O(T^{-1/2}) rate — but with a
  constant that grows linearly with the number of weights n.
* Unlike the paper's ε_i, which enter inside the backward pass and are then
  multiplied by Jacobians, ε_fg replaces the whole backward pass at once: it
  is a perturbation of the weight gradient ũ itself, multiplicative in u
  (it vanishes where the gradient vanishes).

Everything random is drawn from :mod:`fbsgd.rng` streams, so a direction is
a pure function of (key, step, index).

The chapter's operators and problems (the Beale function, a perceptron with a
logistic loss) are in :mod:`fbsgd.studies.forward_gradients.problems`; its measurements in
:mod:`fbsgd.studies.forward_gradients.study`, its verdict rules in :mod:`fbsgd.studies.forward_gradients.verdicts`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fbsgd import rng
from fbsgd.passes import Composite, check_data, check_net

__all__ = ["jvp_pass", "directional_derivatives", "forward_gradients", "ForwardGradient", "ForwardGradientState",
           "gaussian_directions", "second_moment_factor"]


# --------------------------------------------------------------------------
# Forward mode through a Composite
# --------------------------------------------------------------------------


def jvp_pass(net: Composite, x: np.ndarray, w: np.ndarray, dw: np.ndarray):
    """One forward-mode sweep: the loss F(x; w) and its derivative along dw, per sample.

    Returns ``(value, directional)``, both of shape (B,).  The input x is data
    (its tangent is zero); operator i receives the tangent of its input and the
    slice dw_i of the weight direction, and passes on
    ``jvp(y_{i−1}, w_i, dy_{i−1}, dw_i) = ∇₁f_i dy_{i−1} + ∇₂f_i dw_i``.
    """
    net = check_net(net, "jvp_pass")
    x = check_data(net, x, "jvp_pass")
    ws, dws = net.split(w), net.split(np.asarray(dw, dtype=float))
    y, dy = x, np.zeros_like(x)
    for i in range(1, len(net) + 1):
        f = net.op(i)
        y, dy = f.forward(y, ws[i]), f.jvp(y, ws[i], dy, dws[i])
    return y[:, 0], dy[:, 0]


def directional_derivatives(net: Composite, x: np.ndarray, w: np.ndarray, V: np.ndarray, method: str = "auto") -> np.ndarray:
    """∇ℓ(w)·v_k for each row v_k of V (shape (K, n)), ℓ = batch mean of F(x; ·).

    ``method``:

    * ``"loop"``  — one forward-mode sweep (:func:`jvp_pass`) per direction;
      this is what a forward-gradient step costs in practice.
    * ``"basis"`` — n forward-mode sweeps along the unit vectors give the row
      Jacobian J = ∇ℓ(w)ᵀ (still no backward pass), then all K products at once
      as V J.  By linearity of the directional derivative this equals
      ``"loop"`` up to rounding, and it is much cheaper when K ≫ n (Monte
      Carlo studies of the estimator).
    * ``"auto"``  — ``"basis"`` when K > n, else ``"loop"``.
    """
    V = np.atleast_2d(np.asarray(V, dtype=float))
    K, n = V.shape
    if n != net.weight_size:
        raise ValueError(f"directions must have {net.weight_size} columns, got {n}")
    if method == "auto":
        method = "basis" if K > n else "loop"
    if method == "loop":
        return np.array([jvp_pass(net, x, w, v)[1].mean() for v in V])
    if method == "basis":
        J = np.array([jvp_pass(net, x, w, e)[1].mean() for e in np.eye(n)])
        return V @ J
    raise ValueError(f"method must be 'auto', 'loop' or 'basis', got {method!r}")


def gaussian_directions(key: int, step: int, K: int, n: int) -> np.ndarray:
    """K independent N(0, Iₙ) directions, a pure function of (key, step)."""
    return rng.normal(key, step, (K, n))


def forward_gradients(net: Composite, x: np.ndarray, w: np.ndarray, V: np.ndarray, method: str = "auto") -> np.ndarray:
    """The K forward gradients (∇ℓ·v_k) v_k as the rows of a (K, n) array."""
    V = np.atleast_2d(np.asarray(V, dtype=float))
    return directional_derivatives(net, x, w, V, method)[:, None] * V


def second_moment_factor(n: int, K: int = 1) -> dict:
    """Closed forms for the mean of K forward gradients with Gaussian directions,
    in units of ‖∇ℓ‖²: E‖ḡ‖² = 1 + (n+1)/K and E‖ḡ − ∇ℓ‖² = (n+1)/K."""
    return {"second_moment": 1.0 + (n + 1) / K, "variance": (n + 1) / K}


class ForwardGradientState(NamedTuple):
    key: int
    step: int


@dataclass(frozen=True)
class ForwardGradient:
    """Gradient estimator for :func:`fbsgd.optimizers.train`: the mean of
    ``n_directions`` forward gradients of the batch loss, with directions
    drawn from the stream ``derive_key("fbsgd.forward_gradient", seed)`` at
    counter ``step``.  Same calling convention as
    :class:`fbsgd.optimizers.PassGradient`: ``(w, x, state) -> (g, state)``.
    """

    net: Composite
    n_directions: int = 1

    def __post_init__(self):
        if self.n_directions < 1:
            raise ValueError(f"n_directions must be >= 1, got {self.n_directions}")

    def init(self, seed: int) -> ForwardGradientState:
        return ForwardGradientState(rng.derive_key("fbsgd.forward_gradient", int(seed)), 0)

    def __call__(self, w, x, state: ForwardGradientState):
        V = gaussian_directions(state.key, state.step, self.n_directions, self.net.weight_size)
        g = forward_gradients(self.net, x, w, V, method="loop").mean(axis=0)
        return g, ForwardGradientState(state.key, state.step + 1)
