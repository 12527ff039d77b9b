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

This module also holds the two small problems of the forward-gradient
chapter that the core does not: the Beale function as an operator chain, and
a multilayer perceptron on generated two-class data.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import expit

from . import rng
from .operators import Linear, Operator, Parameter, SquaredNorm, Tanh
from .optimizers import SGD, Adam, PassGradient, train
from .passes import Composite, passes

__all__ = [
    # the estimator
    "jvp_pass",
    "directional_derivatives",
    "forward_gradients",
    "ForwardGradient",
    "ForwardGradientState",
    "gaussian_directions",
    "second_moment_factor",
    # problems of the chapter
    "Beale",
    "beale_problem",
    "beale_gradient",
    "BEALE_MINIMUM",
    "CarryLabel",
    "LogisticMargin",
    "mlp_classifier",
    "teacher_classification",
    "quadratic_net",
    # measurements of the chapter
    "monte_carlo_errors",
    "variance_ratio",
    "StepProbe",
    "linearized_floor",
    "estimator_grid",
    "slowdown",
    "one_step_ratios",
]


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
    x = np.atleast_2d(np.asarray(x, dtype=float))
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


# --------------------------------------------------------------------------
# The Beale function as a chain: w = (x, y) -> Parameter -> Beale
# --------------------------------------------------------------------------

_BEALE_C = np.array([1.5, 2.25, 2.625])
BEALE_MINIMUM = np.array([3.0, 0.5])


@dataclass(repr=False)
class Beale(Operator):
    """f(x, y) = Σ_{i=1}^{3} (c_i − x + x yⁱ)², c = (1.5, 2.25, 2.625); weight-free.

    Input rows are points (x, y); the minimum is f(3, 0.5) = 0.
    """

    def __post_init__(self):
        self.in_dim, self.out_dim, self.weight_size = 2, 1, 0

    @staticmethod
    def _parts(p):
        x, y = p[:, :1], p[:, 1:2]
        i = np.arange(1, 4)[None, :]
        yi = y**i
        r = _BEALE_C[None, :] - x + x * yi  # residuals, (B, 3)
        dr_dx = yi - 1.0
        dr_dy = i * x * y ** (i - 1)
        return r, dr_dx, dr_dy

    def forward(self, p, w):
        r, _, _ = self._parts(p)
        return np.sum(r * r, axis=1, keepdims=True)

    def gradient(self, p):
        r, dx, dy = self._parts(p)
        return np.column_stack([np.sum(2 * r * dx, axis=1), np.sum(2 * r * dy, axis=1)])

    def vjp_input(self, p, w, v):
        return v * self.gradient(p)

    def jvp(self, p, w, dp, dw):
        r, dx, dy = self._parts(p)
        return np.sum(2 * r * (dx * dp[:, :1] + dy * dp[:, 1:2]), axis=1, keepdims=True)


def beale_problem():
    """The Beale function as a two-operator chain whose weight is the point:
    ``net = Parameter(2) -> Beale``, evaluated on a single dummy input.
    Returns ``(net, x)``; ``net.value(x, w)[0]`` is f(w) and
    ``passes(net, x, w).gradient()`` the exact gradient by the backward pass."""
    return Composite([Parameter(2, in_dim=1), Beale()]), np.zeros((1, 1))


def beale_gradient(w) -> np.ndarray:
    """Exact ∇f at w by the backward pass of the Beale chain."""
    net, x = beale_problem()
    return passes(net, x, np.asarray(w, dtype=float)).gradient()



# --------------------------------------------------------------------------
# A multilayer perceptron with the label carried along the chain
# --------------------------------------------------------------------------


@dataclass(repr=False)
class CarryLabel(Operator):
    """Apply ``inner`` to all columns but the last, and pass the last (the label) through.

    Lets a labelled sample [features, label] travel along a chain of ordinary
    layers to the loss operator at its end.
    """

    inner: Operator = None

    def __post_init__(self):
        self.in_dim = self.inner.in_dim + 1
        self.out_dim = self.inner.out_dim + 1
        self.weight_size = self.inner.weight_size

    def forward(self, y, w):
        return np.concatenate([self.inner.forward(y[:, :-1], w), y[:, -1:]], axis=1)

    def vjp_input(self, y, w, v):
        return np.concatenate([self.inner.vjp_input(y[:, :-1], w, v[:, :-1]), v[:, -1:]], axis=1)

    def vjp_weight(self, y, w, v):
        return self.inner.vjp_weight(y[:, :-1], w, v[:, :-1])

    def jvp(self, y, w, dy, dw):
        return np.concatenate([self.inner.jvp(y[:, :-1], w, dy[:, :-1], dw), dy[:, -1:]], axis=1)

    def init_weight(self, r):
        return self.inner.init_weight(r)

    def __repr__(self):
        return f"CarryLabel({self.inner!r})"


@dataclass(repr=False)
class LogisticMargin(Operator):
    """Logistic loss of a score z with label y = ±1: ln(1 + e^{−y z}); input rows [z, y]."""

    def __post_init__(self):
        self.in_dim, self.out_dim, self.weight_size = 2, 1, 0

    def forward(self, zy, w):
        return np.logaddexp(0.0, -zy[:, :1] * zy[:, 1:2])

    def vjp_input(self, zy, w, v):
        z, y = zy[:, :1], zy[:, 1:2]
        s = expit(-y * z)
        return v * np.concatenate([-y * s, -z * s], axis=1)

    def jvp(self, zy, w, dzy, dw):
        z, y = zy[:, :1], zy[:, 1:2]
        return expit(-y * z) * (-y * dzy[:, :1] - z * dzy[:, 1:2])


def mlp_classifier(d_in: int, hidden: int) -> Composite:
    """A one-hidden-layer tanh perceptron with logistic loss, as a 4-operator chain:
    Linear(d_in+1 → hidden) → tanh → Linear(hidden → 1) → ln(1 + e^{−y z}).

    Samples are rows [features (d_in), 1, label]: the constant 1 gives the
    hidden layer its bias.  Weights: (d_in + 1)·hidden + hidden."""
    return Composite([
        CarryLabel(Linear(d_in + 1, hidden)),
        CarryLabel(Tanh(hidden)),
        CarryLabel(Linear(hidden, 1)),
        LogisticMargin(),
    ])


def teacher_classification(M: int = 2000, d: int = 20, teacher_hidden: int = 8, flip: float = 0.05, data_seed: int = 0) -> np.ndarray:
    """A generated two-class data set (no download): x ~ N(0, I_d), label =
    sign of a random tanh teacher network, each label flipped with probability
    ``flip``.  Returned in the packed format of :func:`mlp_classifier`."""
    r = np.random.default_rng(data_seed)
    X = r.standard_normal((M, d))
    W1 = r.standard_normal((teacher_hidden, d)) / np.sqrt(d)
    w2 = r.standard_normal(teacher_hidden)
    score = np.tanh(2.0 * X @ W1.T) @ w2
    label = np.where(score > np.median(score), 1.0, -1.0)  # balanced classes
    label[r.uniform(size=M) < flip] *= -1.0
    return np.column_stack([X, np.ones(M), label])


# --------------------------------------------------------------------------
# Measurements used by the chapter
# --------------------------------------------------------------------------


def monte_carlo_errors(net: Composite, x, w, Ks, repeats: int, seed: int = 0, chunk: int = 2_000_000) -> list[dict]:
    """For each K: ``repeats`` independent means of K forward gradients at w,
    compared with the exact gradient u of the backward pass.

    Each row has K, the mean squared error E‖ḡ_K − u‖² with its standard
    error, the closed form (n+1)‖u‖²/K, and the error of the grand mean of
    all repeats·K draws (bias check) with its expected size."""
    w = np.asarray(w, dtype=float)
    n = net.weight_size
    u = passes(net, np.atleast_2d(x), w).gradient()
    J = directional_derivatives(net, x, w, np.eye(n), method="basis")  # forward mode only
    rows = []
    for K in Ks:
        key = rng.derive_key("fbsgd.forward_gradients.monte_carlo", int(seed), int(K))
        per = max(1, chunk // (K * n))
        sq, total, done, step = [], np.zeros(n), 0, 0
        while done < repeats:
            r = min(per, repeats - done)
            V = rng.normal(key, step, (r, K, n))
            G = (V @ J)[:, :, None] * V  # (r, K, n): the forward gradients
            means = G.mean(axis=1)
            sq.append(np.sum((means - u) ** 2, axis=1))
            total += means.sum(axis=0)
            done += r
            step += 1
        sq = np.concatenate(sq)
        grand = total / repeats
        rows.append(dict(K=int(K), repeats=int(repeats), mse=float(sq.mean()), mse_se=float(sq.std(ddof=1) / np.sqrt(repeats)),
                         closed_form_mse=float((n + 1) * (u @ u) / K), grad_norm=float(np.linalg.norm(u)),
                         grand_mean_error=float(np.linalg.norm(grand - u)),
                         grand_mean_rms=float(np.sqrt((n + 1) * (u @ u) / (K * repeats)))))
    return rows


def variance_ratio(net: Composite, x, w, K: int, draws: int, seed: int = 0) -> dict:
    """E‖ḡ_K − u‖² / ‖u‖² and E‖ḡ_K‖² / ‖u‖² measured from ``draws`` means of K
    forward gradients (u the exact gradient), with standard errors and the
    closed forms (n+1)/K and 1 + (n+1)/K."""
    w = np.asarray(w, dtype=float)
    n = net.weight_size
    u = passes(net, np.atleast_2d(x), w).gradient()
    key = rng.derive_key("fbsgd.forward_gradients.variance", int(seed), int(K), int(n))
    V = rng.normal(key, 0, (draws * K, n))
    d = directional_derivatives(net, x, w, V, method="basis" if draws * K > n else "loop")
    means = (d[:, None] * V).reshape(draws, K, n).mean(axis=1)
    uu = float(u @ u)
    var = np.sum((means - u) ** 2, axis=1) / uu
    sec = np.sum(means**2, axis=1) / uu
    cf = second_moment_factor(n, K)
    return dict(n=n, K=K, draws=draws, variance=float(var.mean()), variance_se=float(var.std(ddof=1) / np.sqrt(draws)),
                closed_form_variance=cf["variance"], second_moment=float(sec.mean()),
                second_moment_se=float(sec.std(ddof=1) / np.sqrt(draws)), closed_form_second_moment=cf["second_moment"])


class StepProbe:
    """A ``callback`` for :func:`fbsgd.optimizers.train` that, every ``every``
    steps, compares the step just taken with the exact full-batch gradient u at
    the point where it was taken: it records the progress along the gradient
    ⟨u, step⟩/‖u‖, the step length ‖step‖, and their ratio (the cosine)."""

    def __init__(self, net: Composite, data, every: int = 10, regularizer_grad=None):
        self.net, self.data, self.every, self.reg = net, data, every, regularizer_grad
        self.t, self.progress, self.length = [], [], []

    def __call__(self, t, w, g, step):
        if t % self.every:
            return
        w_prev = w + step
        u = passes(self.net, self.data, w_prev).gradient()
        if self.reg is not None:
            u = u + self.reg(w_prev)
        nu = np.linalg.norm(u)
        self.t.append(t)
        self.progress.append(float(u @ step / nu) if nu > 0 else np.nan)
        self.length.append(float(np.linalg.norm(step)))

    def summary(self) -> dict:
        p, s = np.array(self.progress), np.array(self.length)
        return dict(progress=float(np.nanmean(p)), step_length=float(np.mean(s)), cosine=float(np.nanmean(p / s)))



def linearized_floor(H: np.ndarray, Sigma: np.ndarray, gamma: float, estimator: str = "backprop") -> float:
    """Stationary E[ℓ(w) − ℓ*] ≈ ½ tr(H S) of constant-step SGD on the quadratic
    model ℓ ≈ ℓ* + ½ δᵀHδ, with minibatch gradient noise of covariance Sigma.

    The second moment S = E[δδᵀ] solves the fixed point of

    * backprop:  S ← S − γ(HS + SH) + γ²(HSH + Σ);
    * forward gradient, g = v vᵀ(Hδ + ξ), v ~ N(0, I) (so E[v vᵀ A v vᵀ] = tr(A) I + 2A):
      S ← S − γ(HS + SH) + γ²[tr(HSH + Σ) I + 2HSH + 2Σ].

    For small γ both give ½tr(HS) ≈ (γ/4) × (trace of the noise covariance),
    i.e. tr Σ and (n + 2) tr Σ: the forward gradient's floor is n + 2 times
    higher.  Returns inf when the recursion is not mean-square stable."""
    H = np.asarray(H, dtype=float)
    Sigma = np.asarray(Sigma, dtype=float)
    n = H.shape[0]
    I = np.eye(n)
    # linear map on vec(S), row-major
    A = np.eye(n * n) - gamma * (np.kron(H, I) + np.kron(I, H))
    HH = np.kron(H, H)
    if estimator == "backprop":
        A = A + gamma**2 * HH
        c = gamma**2 * Sigma
    elif estimator == "forward":
        A = A + gamma**2 * (2 * HH + np.outer(I.ravel(), HH.T @ I.ravel()))
        c = gamma**2 * (np.trace(Sigma) * I + 2 * Sigma)
    else:
        raise ValueError("estimator must be 'backprop' or 'forward'")
    if np.max(np.abs(np.linalg.eigvals(A))) >= 1:
        return float("inf")
    S = np.linalg.solve(np.eye(n * n) - A, c.ravel()).reshape(n, n)
    return float(0.5 * np.trace(H @ S))



def estimator_grid(net: Composite, data, w0, optimizer: str, lrs, steps: int, seeds, batch_size: int = 64,
                   metric=None, regularizer_grad=None, record_points: int = 50, probe_steps: int = 200, probe_every: int = 5):
    """Train with backpropagation and with forward gradients, for each learning
    rate and seed, from the same w0 with the same minibatches.

    ``optimizer`` is ``"sgd"`` or ``"adam"``.  Returns two pandas tables:

    * curves: estimator, lr, seed, t, metric value (``metric(w)``, default the
      full-batch mean of F);
    * runs: one row per run with the final metric, the mean metric over the
      second half of the run (a stationary level), whether it diverged, and the
      mean progress ⟨∇ℓ, step⟩/‖∇ℓ‖ and step length over the first
      ``probe_steps`` iterations (:class:`StepProbe`).
    """
    make = {"sgd": SGD, "adam": Adam}[optimizer]
    metric = metric or (lambda w: float(net.value(data, w).mean()))
    estimators = {"backprop": PassGradient(net), "forward gradient": ForwardGradient(net)}
    every = max(1, steps // record_points)
    curves, runs = [], []
    for lr in lrs:
        for name, est in estimators.items():
            for s in seeds:
                probe = StepProbe(net, data, every=probe_every, regularizer_grad=regularizer_grad)
                cb = lambda t, w, g, st, probe=probe: probe(t, w, g, st) if t < probe_steps else None  # noqa: E731
                run = train(est, w0, make(lr), steps, data, batch_size=batch_size, seed=s, regularizer_grad=regularizer_grad,
                            metrics={"loss": metric}, record_every=every, callback=cb)
                loss = run["loss"]
                curves.append(pd.DataFrame(dict(estimator=name, lr=lr, seed=s, t=run.t, loss=loss)))
                pr = probe.summary()
                runs.append(dict(optimizer=optimizer, estimator=name, lr=lr, seed=s, initial=loss[0], final=loss[-1],
                                 second_half=float(np.nanmean(loss[run.t >= steps // 2])) if not run.diverged else np.nan,
                                 diverged=run.diverged, early_progress=pr["progress"], early_step_length=pr["step_length"]))
    return pd.concat(curves, ignore_index=True), pd.DataFrame(runs)


def _first_crossing(t, y, level) -> float:
    """First time the curve y(t) (recorded at t) is at or below ``level``,
    interpolated linearly between records; inf if never, t[0] if already."""
    hit = np.nonzero(y <= level)[0]
    if not len(hit):
        return float("inf")
    i = hit[0]
    if i == 0:
        return float(t[0])
    t0, t1, y0, y1 = t[i - 1], t[i], y[i - 1], y[i]
    return float(t0 + (t1 - t0) * (y0 - level) / (y0 - y1)) if y0 != y1 else float(t1)


def slowdown(t, loss_backprop, loss_forward) -> float:
    """How many times longer the forward-gradient run takes than the backprop run,
    read off two loss curves recorded at the iterations t.

    If forward gradients end worse: T / (time at which backprop first reaches
    the forward-gradient run's final loss), ≥ 1, inf if backprop starts below
    it.  If they end better: (time at which forward gradients first reach the
    backprop run's final loss) / T, < 1.  Crossing times are interpolated
    linearly between records."""
    t = np.asarray(t, dtype=float)
    b, f = np.asarray(loss_backprop, dtype=float), np.asarray(loss_forward, dtype=float)
    T = t[-1]
    if not np.isfinite(f[-1]):
        return float("inf")
    if f[-1] >= b[-1]:
        tc = _first_crossing(t, b, f[-1])
        return float("inf") if tc <= 0 else float(T / tc)
    return float(_first_crossing(t, f, b[-1]) / T)



def quadratic_net(n: int) -> Composite:
    """f(w) = ½‖w‖² as a chain: Parameter(n) -> SquaredNorm(n) (one dummy input)."""
    return Composite([Parameter(n, in_dim=1), SquaredNorm(n)])


def one_step_ratios(n: int, gamma: float, steps: int, seeds, w0=None) -> np.ndarray:
    """SGD with forward gradients on f(w) = ½‖w‖² (ℓ = f, ∇f = w): all ratios
    ‖w_{t+1}‖² / ‖w_t‖² met in ``steps`` iterations from w0 (default all ones),
    for each seed.  Their conditional mean is exactly 1 − 2γ + γ²(n + 2),
    whatever w_t is, so their average estimates it without bias; the
    second moment E‖w_t‖² shrinks iff γ < 2/(n + 2)."""
    net = quadratic_net(n)
    x = np.zeros((1, 1))
    w0 = np.ones(n) if w0 is None else np.asarray(w0, dtype=float)
    out = []
    for s in seeds:
        ratios = []
        cb = lambda t, w, g, step, r=ratios: r.append(float(w @ w) / float((w + step) @ (w + step)))  # noqa: E731
        train(ForwardGradient(net), w0, SGD(gamma), steps, x, seed=s, callback=cb, stop_above=np.inf)
        out.extend(ratios)
    return np.array(out)

