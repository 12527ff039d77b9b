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

A *loss operator* (``uses_labels = True``: :class:`LogisticLoss`,
:class:`SoftmaxCrossEntropy`) is the last link of a chain and reads the
samples' labels: ``forward(y, w, labels=...)``, ``vjp_input(y, w, v,
labels=...)``, ``vjp_weight(y, w, v, labels=...)``, ``jvp(y, w, dy, dw,
labels=...)``; its output is the per-sample loss, shape ``(B, 1)``.  The
labels reach it through :func:`fbsgd.passes.perturbed_passes` (never
perturbed), which checks them once per pass with ``check_labels``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit

__all__ = [
    "Operator",
    "Linear",
    "Affine",
    "Sigmoid",
    "ReLU",
    "Identity",
    "LogisticLoss",
    "SoftmaxCrossEntropy",
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
    uses_labels = False  # True for a loss operator that reads the labels (last in a chain)

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

    def check_labels(self, labels, rows: int, who: str) -> np.ndarray:
        """The labels of ``rows`` samples as this operator reads them, after refusing what it cannot
        read (a ValueError starting with ``who``).  Only a loss operator (``uses_labels``) reads labels;
        this default asks for one real number per row."""
        return _label_vector(labels, rows, who, "real numbers", "biuf")

    def __repr__(self) -> str:  # compact, used in figure labels and errors
        return f"{type(self).__name__}({self.in_dim}->{self.out_dim})"


INITS = ("gaussian", "unit_norm", "zeros")  # the initial matrices of Linear and Affine (their ``init`` field)


def _check_init(owner, gain, init) -> None:
    """Refuse a ``gain`` that is not a finite number > 0 or an ``init`` not in :data:`INITS`, naming the field."""
    name = type(owner).__name__
    if isinstance(gain, bool) or not isinstance(gain, (int, float, np.integer, np.floating)) \
            or not np.isfinite(gain) or gain <= 0:
        raise ValueError(f"{name} needs a finite number gain > 0 (the scale of the initial matrix), got {gain!r}")
    if init not in INITS:
        raise ValueError(f"{name} needs init one of {INITS} (the initial matrix: gaussian entries "
                         f"gain·N(0, 1)/√in_dim, or a gaussian matrix scaled to Frobenius norm gain), got {init!r}")


def _init_matrix(rng, size: int, in_dim: int, gain: float, init: str) -> np.ndarray:
    """``size`` standard normal draws G, then gain·G/√in_dim ("gaussian") or gain·G/‖G‖ ("unit_norm").
    The default gain 1.0 gives the bits of G/√in_dim (1.0·G is G, exactly).  "zeros": a zero matrix
    (gain ignored, nothing drawn; Section 7's w₀ = 0)."""
    if init == "zeros":
        return np.zeros(size)
    G = rng.standard_normal(size)
    return gain * G / (np.linalg.norm(G) if init == "unit_norm" else np.sqrt(in_dim))


def _init_repr(op) -> str:
    """", gain=…, init=…" for the fields that differ from their defaults (none: the repr as before)."""
    return (f", gain={op.gain:g}" if op.gain != 1.0 else "") + (f", init={op.init!r}" if op.init != "gaussian" else "")


@dataclass(repr=False)
class Linear(Operator):
    """f(y, W) = W y with W of shape (out_dim, in_dim), stored row-major in w.

    ``init_weight``: W = gain·G/√in_dim with G standard normal (``init="gaussian"``, the default:
    entries N(0, gain²/in_dim)), or W = gain·G/‖G‖_F (``init="unit_norm"``: Frobenius norm gain).
    """

    in_dim: int
    out_dim: int
    gain: float = 1.0
    init: str = "gaussian"

    def __post_init__(self):
        _sizes(self, in_dim=self.in_dim, out_dim=self.out_dim)
        _check_init(self, self.gain, self.init)
        self.gain = float(self.gain)
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
        return _init_matrix(rng, self.weight_size, self.in_dim, self.gain, self.init)

    def __repr__(self) -> str:
        return f"Linear({self.in_dim}->{self.out_dim}{_init_repr(self)})"


@dataclass(repr=False)
class Affine(Operator):
    """f(y, w) = W y + b, W of shape (out_dim, in_dim).

    The weight vector is W (row-major, ``out_dim * in_dim`` entries) followed by b (``out_dim``
    entries; absent when ``bias=False``, and then this is :class:`Linear`).
    ``init_weight``: entries of W ~ N(0, gain²/in_dim) (``init="gaussian"``, gain 1 by default) or a
    gaussian W scaled to Frobenius norm gain (``init="unit_norm"``), as :class:`Linear`; b = 0.
    """

    in_dim: int
    out_dim: int
    bias: bool = True
    gain: float = 1.0
    init: str = "gaussian"

    def __post_init__(self):
        _sizes(self, in_dim=self.in_dim, out_dim=self.out_dim)
        if not isinstance(self.bias, (bool, np.bool_)):
            raise ValueError(f"Affine needs bias True or False, got {self.bias!r}")
        self.bias = bool(self.bias)
        _check_init(self, self.gain, self.init)
        self.gain = float(self.gain)
        self._nW = self.in_dim * self.out_dim
        self.weight_size = self._nW + (self.out_dim if self.bias else 0)

    def _W(self, w):
        return w[: self._nW].reshape(self.out_dim, self.in_dim)

    def forward(self, y, w):
        out = y @ self._W(w).T
        return out + w[self._nW:] if self.bias else out

    def vjp_input(self, y, w, v):
        return v @ self._W(w)

    def vjp_weight(self, y, w, v):
        gW = (v[:, :, None] * y[:, None, :]).reshape(y.shape[0], -1)
        return np.concatenate([gW, v], axis=1) if self.bias else gW

    def jvp(self, y, w, dy, dw):
        out = dy @ self._W(w).T + y @ self._W(dw).T
        return out + dw[self._nW:] if self.bias else out

    def init_weight(self, rng):
        W = _init_matrix(rng, self._nW, self.in_dim, self.gain, self.init)
        return np.concatenate([W, np.zeros(self.out_dim)]) if self.bias else W

    def __repr__(self) -> str:
        return f"Affine({self.in_dim}->{self.out_dim}{'' if self.bias else ', bias=False'}{_init_repr(self)})"


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


class ReLU(_Elementwise):
    """max(y, 0); its derivative is 1 for y > 0 and 0 for y <= 0 (0 at 0)."""

    def g(self, y):
        return np.maximum(y, 0.0)

    def dg(self, y):
        return (y > 0.0).astype(float)


class Identity(_Elementwise):
    """y itself (a site for perturbations without a change of the value); derivative 1."""

    def forward(self, y, w):
        return np.array(y, dtype=float)

    def vjp_input(self, y, w, v):
        return np.array(v, dtype=float)

    def jvp(self, y, w, dy, dw):
        return np.array(dy, dtype=float)

    def g(self, y):
        return np.array(y, dtype=float)

    def dg(self, y):
        return np.ones_like(y, dtype=float)


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


# --------------------------------------------------------------------------
# Loss operators: the last link of a chain, reading the samples' labels
# --------------------------------------------------------------------------


def _label_vector(labels, rows: int, who: str, what: str, kinds: str) -> np.ndarray:
    """``labels`` as a 1-D array of ``rows`` entries whose dtype kind is in ``kinds``, or a ValueError
    starting with ``who`` that names the labels and what is allowed."""
    if labels is None:
        raise ValueError(f"{who}: labels are missing; the chain's loss reads one label per sample ({what})")
    a = labels if type(labels) is np.ndarray else np.asarray(labels)
    if a.dtype.kind not in kinds:
        raise ValueError(f"{who}: labels must be {what}, got dtype {a.dtype}")
    if a.shape != (rows,):
        raise ValueError(f"{who}: labels must be a 1-D array with one label per sample ({rows}), got shape {a.shape}")
    return a


def _need_labels(op, method: str, labels):
    if labels is None:
        raise ValueError(f"{op!r}.{method}: labels=... is required (one label per row of y); "
                         "fbsgd.passes.perturbed_passes(net, x, w, labels=...) passes them")
    return labels


@dataclass(repr=False)
class LogisticLoss(Operator):
    """The logistic loss of a score s against a label y = ±1: ln(1 + exp(−y s)), per sample.

    Input width 1 (the score), output the per-sample loss, shape (B, 1); labels ±1 (floats or
    integers), given as ``labels=``.  Written with ``logaddexp``, so a score of any size is finite;
    ∂/∂s = −y σ(−y s).
    """

    uses_labels = True

    def __post_init__(self):
        self.in_dim = self.out_dim = 1
        self.weight_size = 0

    def check_labels(self, labels, rows, who):
        a = _label_vector(labels, rows, who, "+1 or -1 (one per sample; LogisticLoss)", "biuf")
        bad = ~((a == 1) | (a == -1))
        if bad.any():
            found = ", ".join(f"{v:g}" for v in np.unique(a[bad])[:5])
            hint = ("; convert 0/1 labels with 2*y - 1" if np.isin(a, (0, 1)).all()
                    else "; class indices 0..K-1 go with SoftmaxCrossEntropy(K)" if a.dtype.kind in "iu" else "")
            raise ValueError(f"{who}: labels must be +1 or -1 (LogisticLoss); {int(bad.sum())} of {rows} are not "
                             f"(values found: {found}){hint}")
        return np.asarray(a, dtype=float)

    def _margin(self, y, labels):
        return -np.asarray(labels, dtype=float) * y[:, 0]  # z = −y s

    def forward(self, y, w, labels=None):
        z = self._margin(y, _need_labels(self, "forward", labels))
        return np.logaddexp(0.0, z)[:, None]

    def _dloss(self, y, labels):
        lab = np.asarray(labels, dtype=float)
        return (-lab * expit(-lab * y[:, 0]))[:, None]  # ∂/∂s ln(1 + e^{−y s}) = −y σ(−y s)

    def vjp_input(self, y, w, v, labels=None):
        return v * self._dloss(y, _need_labels(self, "vjp_input", labels))

    def vjp_weight(self, y, w, v, labels=None):
        return np.zeros((y.shape[0], 0))

    def jvp(self, y, w, dy, dw, labels=None):
        return self._dloss(y, _need_labels(self, "jvp", labels)) * dy

    def __repr__(self) -> str:
        return "LogisticLoss()"


@dataclass(repr=False)
class SoftmaxCrossEntropy(Operator):
    """The cross-entropy of the softmax of K scores s against a class y in 0..K−1:
    logsumexp(s) − s_y, per sample.

    Input width K ≥ 2, output the per-sample loss, shape (B, 1); labels integers 0..K−1, given as
    ``labels=``.  The log-sum-exp subtracts the row's largest score, so scores of any size are
    finite; ∂/∂s = softmax(s) − e_y.
    """

    classes: int
    uses_labels = True

    def __post_init__(self):
        if isinstance(self.classes, bool) or not isinstance(self.classes, (int, np.integer)) or self.classes < 2:
            raise ValueError(f"SoftmaxCrossEntropy needs an integer classes >= 2 (the number K of classes), "
                             f"got {self.classes!r}")
        self.classes = int(self.classes)
        self.in_dim = self.classes
        self.out_dim = 1
        self.weight_size = 0

    def check_labels(self, labels, rows, who):
        K = self.classes
        what = f"integers 0..{K - 1} (class indices; SoftmaxCrossEntropy({K}))"
        a = np.asarray(labels) if labels is not None else None
        if a is not None and a.dtype.kind in "fb":
            hint = ""
            if a.dtype.kind == "f" and np.isin(a, (-1, 1)).all() and (a == -1).any():
                hint = "; ±1 labels go with LogisticLoss"
            elif a.dtype.kind == "f" and np.all(a == np.round(a)):
                hint = "; convert them with labels.astype(int)"
            raise ValueError(f"{who}: labels must be {what}, got dtype {a.dtype}{hint}")
        a = _label_vector(a, rows, who, what, "iu")
        bad = (a < 0) | (a >= K)
        if bad.any():
            found = ", ".join(str(v) for v in np.unique(a[bad])[:5])
            raise ValueError(f"{who}: labels must be {what}; {int(bad.sum())} of {rows} are not (values found: {found})")
        return a

    def forward(self, y, w, labels=None):
        labels = _need_labels(self, "forward", labels)
        rows = np.arange(y.shape[0])
        top = np.argmax(y, axis=1)
        s = y - y[rows, top][:, None]  # the largest score becomes 0, so e^s <= 1
        e = np.exp(s)
        e[rows, top] = 0.0  # the largest term, 1, kept out of the sum: log1p is exact for a small rest
        return (np.log1p(e.sum(axis=1)) - s[rows, labels])[:, None]  # logsumexp(y) − y_label, the shift cancels

    def _dloss(self, y, labels):
        e = np.exp(y - y.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        p[np.arange(y.shape[0]), labels] -= 1.0  # softmax(s) − e_y
        return p

    def vjp_input(self, y, w, v, labels=None):
        return v * self._dloss(y, _need_labels(self, "vjp_input", labels))

    def vjp_weight(self, y, w, v, labels=None):
        return np.zeros((y.shape[0], 0))

    def jvp(self, y, w, dy, dw, labels=None):
        g = self._dloss(y, _need_labels(self, "jvp", labels))
        return np.sum(g * dy, axis=1, keepdims=True)

    def __repr__(self) -> str:
        return f"SoftmaxCrossEntropy({self.classes})"
