"""The operators and small problems of the forward-gradient chapter that the core does not have.

* :class:`Beale` — the Beale function f(x, y) = Σᵢ (cᵢ − x + x yⁱ)² as a weight-free
  operator; :func:`beale_problem` makes it a chain ``Parameter(2) → Beale`` whose
  weight is the point (the test function of Gao et al., 2022, Figure 1);
* :class:`CarryLabel` and :class:`LogisticMargin` — carry a sample's label along a
  chain of ordinary layers and end it with the logistic loss ln(1 + e^{−y z}), which
  makes :func:`mlp_classifier` a one-hidden-layer perceptron as a 4-operator chain;
* :func:`teacher_classification` — its generated two-class data;
* :func:`quadratic_net` — f(w) = ½‖w‖² as a chain (the stability check);
* :func:`training_models` — the two models the SGD and Adam runs train, from the chapter's parameters.

Every operator has ``forward``, the backward products (``vjp_input``/``vjp_weight``)
and the forward product ``jvp`` that :func:`fbsgd.studies.forward_gradients.estimators.jvp_pass` uses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from fbsgd.operators import Linear, Operator, Parameter, SquaredNorm, Tanh
from fbsgd.passes import Composite, passes
from fbsgd.problems import LogisticRegression

__all__ = ["Beale", "beale_problem", "beale_gradient", "BEALE_MINIMUM", "CarryLabel", "LogisticMargin",
           "mlp_classifier", "teacher_classification", "quadratic_net", "training_models"]


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


def quadratic_net(n: int) -> Composite:
    """f(w) = ½‖w‖² as a chain: Parameter(n) -> SquaredNorm(n) (one dummy input)."""
    return Composite([Parameter(n, in_dim=1), SquaredNorm(n)])


def training_models(n_samples: int, mlp_inputs: int, mlp_hidden: int, data_seed: int = 0):
    """The two models of the chapter's SGD and Adam runs, in the format of
    :func:`fbsgd.studies.forward_gradients.study.training_grid`: the logistic regression of Section 7.1
    (d = 10, ρ = 0.001, non-convex regularizer, excess loss ℓ(w) − ℓ* as the metric, the
    regularizer's gradient added exactly, w₀ = 0) and the perceptron of :func:`mlp_classifier`
    on :func:`teacher_classification` data (w₀ from ``init_weight`` with ``data_seed``).
    Returns ``(models, logreg, w_opt)``: the dict name -> model, the logistic regression
    problem and its minimizer (for :func:`fbsgd.studies.forward_gradients.study.noise_floors`)."""
    logreg = LogisticRegression.generate(d=10, M=n_samples, rho=0.001, regularizer="nonconvex",
                                         data_seed=data_seed)
    w_opt = logreg.minimize()
    loss_opt = logreg.loss(w_opt)
    mlp_net = mlp_classifier(mlp_inputs, mlp_hidden)
    mlp_data = teacher_classification(M=n_samples, d=mlp_inputs, data_seed=data_seed)
    models = {
        "logistic regression": dict(
            net=logreg.net, data=logreg.data, w0=np.zeros(logreg.d),
            metric=lambda w: logreg.loss(w) - loss_opt,
            regularizer_grad=lambda w: logreg.rho * logreg.regularizer.gradient(w)),
        "perceptron": dict(net=mlp_net, data=mlp_data,
                           w0=mlp_net.init_weight(np.random.default_rng(data_seed))),
    }
    return models, logreg, w_opt
