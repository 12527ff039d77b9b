"""Update rules (eq. 4d / 5d and its momentum variant) as small stateful objects.

``update(g, state, w) -> (step, state)`` with ``w_next = w - step``, the
optax convention.  :func:`descend` runs a deterministic full-batch loop on a
:class:`~fbsgd.passes.Composite`; it serves the small examples of the book
(Appendix A).  The Section 7 sweeps use the compiled engine in
:mod:`fbsgd.engine` instead.

:func:`train` is the general loop: it takes any *gradient estimator* (an
object with ``init(seed) -> state`` and ``estimator(w, x, state) -> (g,
state)``), optional minibatches drawn from a counter-based stream, and any
update rule.  Two estimators exist: :class:`PassGradient` (the backward
pass of eq. 4, or the perturbed passes of eq. 5 when given a plan) and
:class:`fbsgd.forward_gradients.ForwardGradient` (a forward-mode estimate,
no backward pass).  Both plug into the same loop, so a comparison between
them changes one argument and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from . import rng
from .passes import Composite, perturbed_passes
from .perturbations import Plan

__all__ = ["SGD", "HeavyBall", "Adam", "AdamState", "AddNoise", "descend", "PassGradient", "Run", "train",
           "minibatch_indices", "DIVERGENCE_THRESHOLD", "diverged"]

# The one divergence rule of fbsgd (this loop, the compiled engine, the sweeps):
# a run has diverged once a weight is non-finite or exceeds this in magnitude.
DIVERGENCE_THRESHOLD = 1e8


def diverged(w, threshold: float = DIVERGENCE_THRESHOLD) -> bool:
    """True when some weight is NaN, ±inf, or larger than ``threshold`` in magnitude."""
    return not bool(np.all(np.abs(w) <= threshold))


@dataclass(frozen=True)
class SGD:
    """w ← w − γ g  (eq. 4d)."""

    lr: float

    def init(self, w):
        return ()

    def update(self, g, state, w):
        return self.lr * g, state


@dataclass(frozen=True)
class HeavyBall:
    """Heavy-ball momentum as written in Appendix A.3:
    w^{t+1} = w^t − γ g^t + β (w^t − w^{t−1})."""

    lr: float
    beta: float

    def init(self, w):
        return np.zeros_like(w)  # w^t − w^{t−1}, zero at the start

    def update(self, g, state, w):
        step = self.lr * g - self.beta * state
        return step, -step


class AdamState(NamedTuple):
    """Adam's state: the step count and the two moment estimates."""

    count: int
    mu: np.ndarray
    nu: np.ndarray


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba, 2015, Algorithm 1), optax convention ``w ← w − step``:

    m_t = β₁ m_{t−1} + (1 − β₁) g_t,     v_t = β₂ v_{t−1} + (1 − β₂) g_t²,
    m̂_t = m_t / (1 − β₁ᵗ),               v̂_t = v_t / (1 − β₂ᵗ),
    step = lr · m̂_t / (√v̂_t + eps),

    with m_0 = v_0 = 0 and t counted from 1 (``eps`` outside the root, as in
    the paper and in ``optax.adam``).
    """

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self):
        if not (self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.eps >= 0):
            raise ValueError(f"Adam needs lr > 0, 0 <= beta1, beta2 < 1 and eps >= 0, got {self}")

    def init(self, w):
        z = np.zeros(np.shape(w), dtype=float)
        return AdamState(0, z, z.copy())

    def update(self, g, state, w):
        t = state.count + 1
        mu = self.beta1 * state.mu + (1.0 - self.beta1) * g
        nu = self.beta2 * state.nu + (1.0 - self.beta2) * (g * g)
        mu_hat = mu / (1.0 - self.beta1**t)
        nu_hat = nu / (1.0 - self.beta2**t)
        return self.lr * mu_hat / (np.sqrt(nu_hat) + self.eps), AdamState(t, mu, nu)


@dataclass(frozen=True)
class AddNoise:
    """Sampling noise as a transformation (as ``optax.add_noise``): g ← g + ξ_t,
    ξ_t ~ N(0, std² I) drawn from the counter stream ``key`` at step t, then ``inner``.

    The Section 7 runs add ξ_t to the full-batch gradient to mimic sampling
    (the set-up of Section 7.1, inside the update (5d)); the compiled engine draws the same ξ_t.
    """

    inner: object
    std: float
    key: int

    def init(self, w):
        return (0, self.inner.init(w))

    def update(self, g, state, w):
        t, inner_state = state
        g = g + rng.normal(self.key, t, np.shape(w), self.std)
        step, inner_state = self.inner.update(g, inner_state, w)
        return step, (t + 1, inner_state)


def descend(
    net: Composite,
    x: np.ndarray,
    w0: np.ndarray,
    optimizer,
    steps: int,
    plan: Plan | None = None,
    seed: int = 0,
    regularizer_grad: Callable[[np.ndarray], np.ndarray] | None = None,
    stop_above: float = DIVERGENCE_THRESHOLD,
) -> np.ndarray:
    """Full-batch (perturbed) gradient descent; returns the iterates, shape (≤steps+1, d).

    :func:`train` with the passes as estimator and every iterate recorded.

    The loop stops early (returning the iterates so far) once the run has
    diverged (:func:`diverged` with threshold ``stop_above``), so a diverging
    example never overflows.
    """
    out = [np.array(w0, dtype=float)]
    train(PassGradient(net, plan or Plan()), w0, optimizer, steps, x, seed=seed, regularizer_grad=regularizer_grad,
          callback=lambda t, w, g, step: out.append(w.copy()), stop_above=stop_above)
    return np.array(out)


# --------------------------------------------------------------------------
# Gradient estimators and the general loop
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PassGradient:
    """The gradient of the batch loss by the passes of eq. (4), or by the
    perturbed passes of eq. (5) when a :class:`~fbsgd.perturbations.Plan` is given.

    ``init(seed)`` gives the plan's streams; ``(w, x, state) -> (g, state)``
    returns the batch mean of the weight gradient (ũ_1, ..., ũ_N).
    """

    net: Composite
    plan: Plan = field(default_factory=Plan)

    def init(self, seed: int):
        return self.plan.init(seed)

    def __call__(self, w, x, state):
        p, state = perturbed_passes(self.net, x, w, self.plan, state)
        return p.gradient(), state


def minibatch_indices(key: int, step: int, n_samples: int, batch_size: int) -> np.ndarray:
    """``batch_size`` sample indices drawn uniformly with replacement, a pure
    function of ``(key, step)`` (counter-based stream)."""
    u = rng.uniform(key, step, batch_size)
    return np.minimum((u * n_samples).astype(np.int64), n_samples - 1)


@dataclass
class Run:
    """What :func:`train` records: the iterations ``t`` at which the metrics
    were evaluated, one array per metric, the final weight, whether the run
    was stopped because the weights blew up (later entries are NaN), and the
    iteration whose update did so (−1 if none)."""

    t: np.ndarray
    metrics: dict
    w: np.ndarray
    diverged: bool
    diverged_at: int = -1

    def __getitem__(self, name):
        return self.metrics[name]


def train(
    estimator,
    w0: np.ndarray,
    optimizer,
    steps: int,
    data: np.ndarray,
    batch_size: int | None = None,
    seed: int = 0,
    regularizer_grad: Callable[[np.ndarray], np.ndarray] | None = None,
    metrics: dict | None = None,
    record_every: int = 1,
    callback: Callable | None = None,
    stop_above: float = DIVERGENCE_THRESHOLD,
) -> Run:
    """Run ``steps`` iterations of ``w ← w − optimizer.update(g, ...)`` with
    ``g = estimator(w, batch)`` (+ the exact regularizer gradient).

    * ``batch_size=None``: every step uses all of ``data`` (full batch);
      otherwise a minibatch drawn with replacement from the stream
      ``derive_key("fbsgd.train.batch", seed)`` at counter ``t``.
    * The estimator's own randomness (perturbations, forward-gradient
      directions) is keyed by ``seed`` too, through ``estimator.init(seed)``.
      Two runs with the same seed and different estimators therefore see
      the same minibatches.
    * ``metrics`` maps names to functions of ``w`` (e.g. the full-batch
      loss); they are recorded at t = 0, record_every, 2·record_every, ...
      and at t = steps.
    * ``callback(t, w, g, step)`` is called after each update (for
      diagnostics such as the angle between a step and the true gradient).
    * The loop stops once the run has diverged (:func:`diverged`: a weight is
      non-finite or larger than ``stop_above`` in magnitude); the metrics not
      yet recorded are NaN, ``diverged`` is True and ``diverged_at`` the iteration.
    """
    if steps < 0 or record_every < 1:
        raise ValueError("need steps >= 0 and record_every >= 1")
    data = np.atleast_2d(np.asarray(data, dtype=float))
    metrics = dict(metrics or {})
    record = sorted(set(range(0, steps + 1, record_every)) | {steps})
    values = {k: np.full(len(record), np.nan) for k in metrics}
    batch_key = rng.derive_key("fbsgd.train.batch", int(seed))
    est_state = estimator.init(seed)
    w = np.array(w0, dtype=float)
    opt_state = optimizer.init(w)
    blew_up = -1
    j = 0
    for t in range(steps + 1):
        if j < len(record) and record[j] == t:
            for k, f in metrics.items():
                values[k][j] = f(w)
            j += 1
        if t == steps:
            break
        x = data if batch_size is None else data[minibatch_indices(batch_key, t, data.shape[0], batch_size)]
        g, est_state = estimator(w, x, est_state)
        if regularizer_grad is not None:
            g = g + regularizer_grad(w)
        step, opt_state = optimizer.update(g, opt_state, w)
        w = w - step
        if callback is not None:
            callback(t, w, g, step)
        if diverged(w, stop_above):
            blew_up = t
            break
    return Run(np.array(record), values, w, blew_up >= 0, blew_up)
