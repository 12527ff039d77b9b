"""Update rules (eq. 4d / 5d and its momentum variant) as small stateful objects.

``update(g, state, w) -> (step, state)`` with ``w_next = w - step``, the
optax convention.  :func:`descend` runs a deterministic full-batch loop on a
:class:`~fbsgd.passes.Composite`; it serves the small examples of the book
(Appendix A).  The Section 7 sweeps use the compiled engine in
:mod:`fbsgd.engine.lockstep` instead.

:func:`train` is the general loop: it takes any *gradient estimator* (an
object with ``init(seed) -> state`` and ``estimator(w, x, state) -> (g,
state)``), optional minibatches drawn from a counter-based stream, and any
update rule.  Two estimators exist: :class:`PassGradient` (the backward
pass of eq. 4, or the perturbed passes of eq. 5 when given a plan) and
:class:`fbsgd.studies.forward_gradients.estimators.ForwardGradient` (a forward-mode estimate,
no backward pass).  Both plug into the same loop, so a comparison between
them changes one argument and nothing else.
"""
from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from fbsgd import rng
from fbsgd.passes import Composite, _real_array, check_data, check_net, perturbed_passes
from fbsgd.perturbations import Plan
from fbsgd.problems import Dataset

__all__ = ["SGD", "HeavyBall", "Adam", "AdamState", "AddNoise", "descend", "PassGradient", "Run", "train",
           "minibatch_indices", "DIVERGENCE_THRESHOLD", "diverged"]

# The one divergence rule of fbsgd (this loop, the compiled engine, the sweeps):
# a run has diverged once a weight is non-finite or exceeds this in magnitude.
DIVERGENCE_THRESHOLD = 1e8


def diverged(w, threshold: float = DIVERGENCE_THRESHOLD) -> bool:
    """True when some weight is NaN, ±inf, or larger than ``threshold`` in magnitude."""
    return not bool(np.all(np.abs(w) <= threshold))


# Argument checks, made once when an object is built or a loop starts (never per step).

def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _need_step_size(who: str, lr) -> None:
    if not (_is_real(lr) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"{who}: lr (the step size γ) must be a finite number > 0, got {lr!r}")


def _need_rule(who: str, name: str, rule) -> None:
    if not (callable(getattr(rule, "init", None)) and callable(getattr(rule, "update", None))):
        raise ValueError(f"{who}: {name} must be an update rule with init(w) and update(g, state, w) "
                         f"(SGD, HeavyBall, Adam, AddNoise), got {type(rule).__name__}")


@dataclass(frozen=True)
class SGD:
    """w ← w − γ g  (eq. 4d)."""

    lr: float

    def __post_init__(self):
        _need_step_size("SGD", self.lr)

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

    def __post_init__(self):
        _need_step_size("HeavyBall", self.lr)
        if not (_is_real(self.beta) and 0 <= self.beta < 1):
            raise ValueError(f"HeavyBall: beta (the momentum β) must be a number in [0, 1), got {self.beta!r}")

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

    def __post_init__(self):
        _need_rule("AddNoise", "inner", self.inner)
        if not (_is_real(self.std) and math.isfinite(self.std) and self.std >= 0):
            raise ValueError(f"AddNoise: std must be a finite number >= 0, got {self.std!r}")
        if not _is_int(self.key):
            raise ValueError(f"AddNoise: key must be an integer stream key (fbsgd.rng.derive_key(...)), got {self.key!r}")

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
    estimator = PassGradient(net, plan or Plan())  # refuses a net that is not a Composite, by name
    out = [np.array(_real_array(w0, "descend", "w0"), dtype=float)]
    train(estimator, w0, optimizer, steps, x, seed=seed, regularizer_grad=regularizer_grad,
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
    returns the batch mean of the weight gradient (ũ_1, ..., ũ_N).  For a chain ending in a
    loss that reads labels, give them: ``(w, x, state, labels=y)``, or ``x`` a
    :class:`~fbsgd.problems.Dataset` (its features and labels).
    """

    net: Composite
    plan: Plan = field(default_factory=Plan)

    def __post_init__(self):
        check_net(self.net, "PassGradient")
        if not isinstance(self.plan, Plan):
            raise ValueError(f"PassGradient: plan must be a Plan (fbsgd.Plan(forward={{i: ...}}, backward={{i: ...}})), "
                             f"got {type(self.plan).__name__}")
        self.plan.validate(len(self.net))

    def init(self, seed: int):
        return self.plan.init(seed)

    def __call__(self, w, x, state, labels=None):
        if isinstance(x, Dataset):
            if labels is not None:
                raise ValueError("PassGradient: labels were given twice (x is a Dataset, which holds its labels)")
            x, labels = x.features, x.labels
        p, state = perturbed_passes(self.net, x, w, self.plan, state, labels)
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
    data: np.ndarray | Dataset,
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

    * ``data``: an array, one row per sample, or a :class:`~fbsgd.problems.Dataset`
      (features and labels) for a chain ending in a loss that reads labels; the estimator is
      then called as ``estimator(w, x, state, labels=y)``.
    * ``batch_size=None``: every step uses all of ``data`` (full batch);
      otherwise a minibatch drawn with replacement from the stream
      ``derive_key("fbsgd.train.batch", seed)`` at counter ``t`` (the same rows of the
      features and of the labels).
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
    _check_train_arguments(estimator, optimizer, steps, batch_size, seed, regularizer_grad, metrics, record_every,
                           callback, stop_above)
    net = getattr(estimator, "net", None)
    net = net if isinstance(net, Composite) else None
    labels = _train_labels(estimator, net, data)
    if labels is not None:
        data = data.features
    data = check_data(net, data, "train", "data")
    for name, a in (("data", data), ("w0", w0 := np.asarray(_real_array(w0, "train", "w0")))):
        if not np.isfinite(a).all():  # once here, so an estimator need not check it at every step
            raise ValueError(f"train: {name} has {int(a.size - np.isfinite(a).sum())} non-finite entries (NaN or inf); "
                             "training needs finite inputs")
    if net is not None:
        net.op(1).check_input(data, "train: data")
        if w0.shape != (net.weight_size,):
            raise ValueError(f"train: w0 must be a 1-D array of length {net.weight_size} (the network's weight size), "
                             f"got shape {w0.shape}")
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
        if labels is None:
            x = data if batch_size is None else data[minibatch_indices(batch_key, t, data.shape[0], batch_size)]
            g, est_state = estimator(w, x, est_state)
        else:
            rows = slice(None) if batch_size is None else minibatch_indices(batch_key, t, data.shape[0], batch_size)
            g, est_state = estimator(w, data[rows], est_state, labels=labels[rows])
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


def _takes_labels(estimator) -> bool:
    try:
        params = inspect.signature(estimator).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "labels" or p.kind is p.VAR_KEYWORD for p in params)


def _train_labels(estimator, net, data):
    """The labels :func:`train` passes on (``data.labels`` for a Dataset, else None), after refusing
    a data set whose labels the chain does not read or cannot read, and a chain that reads labels
    given no Dataset (each a ValueError naming ``data`` or ``estimator``)."""
    reads = net is not None and net.uses_labels
    if not isinstance(data, Dataset):
        if reads:
            raise ValueError(f"train: the network ends in {net.ops[-1]!r}, which reads one label per sample: give data "
                             "as a fbsgd.problems.Dataset(features, labels)")
        return None
    if net is not None and not reads:
        hint = " (its labels are the last column of each row of the data array)" if net.op(1).in_dim == data.dim + 1 else ""
        raise ValueError(f"train: data is a Dataset (features and labels), but the network's last operator "
                         f"{net.ops[-1]!r} reads no labels{hint}; end the chain in LogisticLoss() or "
                         "SoftmaxCrossEntropy(K) (fbsgd.problems.mlp builds one), or give the data as an array")
    if not _takes_labels(estimator):
        raise ValueError(f"train: data is a Dataset with labels, but estimator {type(estimator).__name__} takes no "
                         "labels= argument; use PassGradient(net, plan)")
    if net is not None:
        last = net.ops[-1]
        K = getattr(last, "classes", None)
        if data.kind == "classes" and isinstance(K, int) and K != data.classes:
            raise ValueError(f"train: data has {data.classes} classes but the network's loss {last!r} has {K}")
        last.check_labels(data.labels, data.rows, "train: data")
    return data.labels


def _check_train_arguments(estimator, optimizer, steps, batch_size, seed, regularizer_grad, metrics, record_every,
                           callback, stop_above) -> None:
    """Everything :func:`train` is given except the data and w0, refused with the argument's name."""
    if not (callable(estimator) and callable(getattr(estimator, "init", None))):
        raise ValueError("train: estimator must have init(seed) and be called as (w, x, state) -> (g, state) "
                         f"(PassGradient(net, plan), ForwardGradient(net)), got {type(estimator).__name__}"
                         + (" — give PassGradient(net) for a network" if isinstance(estimator, (Composite, list)) else ""))
    _need_rule("train", "optimizer", optimizer)
    for name, v, lo in (("steps", steps, 0), ("record_every", record_every, 1)):
        if not (_is_int(v) and v >= lo):
            raise ValueError(f"train: {name} must be an integer >= {lo}, got {v!r}")
    if batch_size is not None and not (_is_int(batch_size) and batch_size >= 1):
        raise ValueError(f"train: batch_size must be None (full batch) or an integer >= 1, got {batch_size!r}")
    if not _is_int(seed):
        raise ValueError(f"train: seed must be an integer, got {seed!r}")
    if not (_is_real(stop_above) and stop_above > 0):  # NaN fails too; inf means never stop
        raise ValueError(f"train: stop_above must be a number > 0 (inf: never stop), got {stop_above!r}")
    for name, f in (("regularizer_grad", regularizer_grad), ("callback", callback)):
        if f is not None and not callable(f):
            raise ValueError(f"train: {name} must be a function or None, got {type(f).__name__}")
    if metrics is not None:
        if not isinstance(metrics, dict):
            raise ValueError(f"train: metrics must be a dict of name -> function of w, got {type(metrics).__name__}")
        for k, f in metrics.items():
            if not callable(f):
                raise ValueError(f"train: metrics[{k!r}] must be a function of w, got {type(f).__name__}")
