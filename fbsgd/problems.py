"""Problems used in the book: the logistic regression of Section 7 and
linear networks for the depth experiments; and a researcher's own model and
data: :class:`Dataset` (features and labels, generated or given) and
:func:`mlp` (a chain of affine maps and activations ending in a loss that
reads the labels)."""
from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import expit

from fbsgd.operators import (Affine, Identity, Linear, LogisticLoss, LogisticScore, ReLU, Sigmoid, Softplus,
                             SoftmaxCrossEntropy, Tanh)
from fbsgd.passes import Composite, _real_array
from fbsgd.regularizers import Regularizer, get_regularizer

__all__ = ["LogisticRegression", "linear_network", "Dataset", "mlp", "ACTIVATIONS"]


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


# --------------------------------------------------------------------------
# A researcher's own data and model
# --------------------------------------------------------------------------


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a)  # a copy the caller cannot change afterwards
    a.setflags(write=False)
    return a


def _dataset_labels(who: str, y, rows: int, classes):
    """(labels, K): ±1 labels as float64 (K = 2) or class indices as int64 (K = ``classes`` or max + 1)."""
    y = _real_array(y, who, "labels")
    if y.shape != (rows,):
        raise ValueError(f"{who}: labels must be a 1-D array with one label per row of features ({rows}), got shape {y.shape}")
    allowed = "either +1/-1 (a binary set) or integers 0..K-1 (K classes)"
    if y.dtype.kind == "b":
        raise ValueError(f"{who}: labels must be {allowed}, got dtype bool; convert with 2*y - 1 or y.astype(int)")
    if classes is not None:
        _need_int(who, "classes", classes, 2)
    if y.dtype.kind == "f" or (y == -1).any():
        bad = ~((y == 1) | (y == -1))
        if bad.any():
            found = ", ".join(f"{v:g}" for v in np.unique(y[bad])[:5])
            hint = ("; convert 0/1 labels with 2*y - 1 (binary) or y.astype(int) (classes)" if np.isin(y, (0, 1)).all()
                    else "; class indices must be integers: y.astype(int)" if y.dtype.kind == "f" and np.isfinite(y).all()
                    and (y == np.round(y)).all() and (y >= 0).all() else "")
            raise ValueError(f"{who}: labels must be {allowed}; {int(bad.sum())} of {rows} are not "
                             f"(values found: {found}){hint}")
        if classes not in (None, 2):
            raise ValueError(f"{who}: classes must be None or 2 for ±1 labels (a binary set), got {classes!r}")
        return np.asarray(y, dtype=float), 2
    lo, hi = int(y.min()), int(y.max())
    K = hi + 1 if classes is None else int(classes)
    if lo < 0 or hi >= K:
        found = ", ".join(str(v) for v in np.unique(y[(y < 0) | (y >= K)])[:5])
        raise ValueError(f"{who}: labels must be {allowed} with K = classes = {K}; found {found}")
    if K < 2:
        raise ValueError(f"{who}: integer labels must name at least 2 classes (0..K-1 with K >= 2); all labels are {lo} "
                         "— give classes=K if the set holds only some of K classes")
    return np.asarray(y, dtype=np.int64), K


@dataclass(frozen=True, eq=False)
class Dataset:
    """A researcher's data: one row of ``features`` per sample and one label per row.

    ``features``: a 2-D array of finite real numbers (stored as float64); ``labels``: either ±1
    (``kind == "binary"``, stored as float64, read by :class:`~fbsgd.operators.LogisticLoss`) or
    integers 0..K−1 (``kind == "classes"``, stored as int64, read by
    :class:`~fbsgd.operators.SoftmaxCrossEntropy`); ``classes`` is K (2 for a binary set; for
    integer labels the largest label + 1 unless given).  Both arrays are copied and read-only.

    ``fingerprint`` (the sha256 of the shape, dtype and bytes of both arrays) is its identity:
    :func:`fbsgd.perturbations.canonical` writes a data set as its size, kind, K and fingerprint, so
    caches and random streams keyed by it change when any number changes and never by its ``name``
    (a label for tables and figures).  Two data sets are equal when their arrays and K are.
    """

    features: np.ndarray
    labels: np.ndarray
    name: str = ""
    classes: int | None = None

    def __post_init__(self):
        who = "Dataset"
        x = _real_array(self.features, who, "features")
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{who}: features must be a 2-D array (rows: samples, columns: features) with at least "
                             f"one row and one column, got shape {x.shape}")
        x = np.asarray(x, dtype=float)
        if not np.isfinite(x).all():
            raise ValueError(f"{who}: features has {int(x.size - np.isfinite(x).sum())} non-finite entries (NaN or inf); "
                             "finite numbers are needed")
        y, K = _dataset_labels(who, self.labels, x.shape[0], self.classes)
        if not isinstance(self.name, str):
            raise ValueError(f"{who}: name must be a string, got {type(self.name).__name__}")
        object.__setattr__(self, "features", _frozen(x))
        object.__setattr__(self, "labels", _frozen(y))
        object.__setattr__(self, "classes", K)

    # --- what it is -----------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """"binary" (labels ±1) or "classes" (labels 0..K−1)."""
        return "binary" if self.labels.dtype.kind == "f" else "classes"

    @property
    def rows(self) -> int:
        return self.features.shape[0]

    @property
    def dim(self) -> int:
        """The number of features (columns), the input width of a chain that reads this set."""
        return self.features.shape[1]

    def __len__(self) -> int:
        return self.rows

    @cached_property
    def fingerprint(self) -> str:
        """sha256 (64 hex digits) of the shape, dtype and bytes of the features, then of the labels."""
        h = hashlib.sha256()
        for a in (self.features, self.labels):
            h.update(f"{a.shape}|{a.dtype.str}|".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def __fbsgd_canonical__(self) -> str:
        return (f"Dataset(rows={self.rows}, dim={self.dim}, kind={self.kind!r}, classes={self.classes}, "
                f"sha256={self.fingerprint!r})")

    def __eq__(self, other) -> bool:
        return isinstance(other, Dataset) and (self.classes, self.fingerprint) == (other.classes, other.fingerprint)

    def __hash__(self) -> int:
        return hash((self.classes, self.fingerprint))

    def __repr__(self) -> str:
        name = f"{self.name!r}, " if self.name else ""
        return (f"Dataset({name}{self.rows} rows x {self.dim} features, {self.kind}, classes={self.classes}, "
                f"sha256={self.fingerprint[:16]})")

    def __reduce__(self):  # rebuilt (and checked) from its arrays: read-only again after pickling
        return (type(self), (np.asarray(self.features), np.asarray(self.labels), self.name, self.classes))

    # --- making one -------------------------------------------------------------------------------
    @classmethod
    def classification(cls, n: int, dim: int, classes: int = 2, seed: int = 0, label_noise: float = 0.5) -> "Dataset":
        """A generated classification set: rows x ~ N(0, I_dim), then

        * ``classes=2``: y = sign(xᵀθ/√dim + label_noise·ξ) (0 → +1) with θ ~ N(0, I_dim), ξ ~ N(0, 1)
          per row — the draws and bits of
          ``fbsgd.studies.real_mechanisms.deep_chain.classification_data(n, dim, seed, label_noise)``;
        * ``classes=K > 2``: y = argmax_k (x Θ/√dim + label_noise·Ξ)_k with Θ ~ N(0, 1) of shape (dim, K)
          and Ξ ~ N(0, 1) of shape (n, K), labels 0..K−1,

        drawn in that order from ``numpy.random.default_rng(seed)``.
        """
        who = "Dataset.classification"
        _need_int(who, "n", n, 1)
        _need_int(who, "dim", dim, 1)
        _need_int(who, "classes", classes, 2)
        _need_int(who, "seed", seed, 0)
        _need_real(who, "label_noise", label_noise, 0.0)
        g = np.random.default_rng(seed)
        x = g.standard_normal((n, dim))
        if classes == 2:
            theta = g.standard_normal(dim)
            y = np.sign(x @ theta / np.sqrt(dim) + label_noise * g.standard_normal(n))
            y[y == 0] = 1.0
        else:
            theta = g.standard_normal((dim, classes))
            y = np.argmax(x @ theta / np.sqrt(dim) + label_noise * g.standard_normal((n, classes)), axis=1)
        return cls(x, y, name=f"classification(n={n}, dim={dim}, classes={classes}, seed={seed})", classes=classes)

    @classmethod
    def digits(cls) -> "Dataset":
        """scikit-learn's handwritten digits (UCI optical recognition of handwritten digits, test part):
        1797 images of 8 × 8 pixels as 64 features with values 0..16, labels 0..9 (K = 10), read from
        the copy shipped inside scikit-learn (nothing is downloaded).  Needs scikit-learn installed;
        ``.standardized()`` scales the features."""
        try:
            from sklearn.datasets import load_digits  # deferred: scikit-learn is optional, needed by this data set only
        except ImportError as e:
            raise ImportError("Dataset.digits needs scikit-learn, which ships the digits data "
                              "(pip install scikit-learn); it is not installed") from e
        d = load_digits()
        return cls(np.asarray(d.data, dtype=float), np.asarray(d.target, dtype=np.int64), name="digits", classes=10)

    def split(self, test_fraction: float, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """(train, test): round(test_fraction · rows) rows drawn without replacement by
        ``numpy.random.default_rng(seed).permutation`` go to test, the rest to train; each part keeps
        the rows in their original order, and K."""
        who = "Dataset.split"
        _need_real(who, "test_fraction", test_fraction)
        if not 0 < test_fraction < 1:
            raise ValueError(f"{who}: test_fraction must be a number in (0, 1), got {test_fraction!r}")
        _need_int(who, "seed", seed, 0)
        n_test = int(round(test_fraction * self.rows))
        if not 1 <= n_test <= self.rows - 1:
            raise ValueError(f"{who}: test_fraction = {test_fraction!r} of {self.rows} rows gives {n_test} test rows; "
                             "both parts need at least one row")
        perm = np.random.default_rng(seed).permutation(self.rows)
        parts = []
        for idx, part in ((np.sort(perm[n_test:]), "train"), (np.sort(perm[:n_test]), "test")):
            parts.append(type(self)(self.features[idx], self.labels[idx], name=f"{self.name} ({part})".strip(),
                                    classes=self.classes))
        return parts[0], parts[1]

    def standardized(self, using: "Dataset | None" = None) -> "Dataset":
        """Each feature column centred and scaled to unit standard deviation by the mean and standard
        deviation of ``using`` (default: this set; give the training set to standardize a test set
        alike); a column that is constant there is only centred."""
        ref = self if using is None else using
        if not isinstance(ref, Dataset):
            raise ValueError(f"Dataset.standardized: using must be a Dataset or None, got {type(ref).__name__}")
        if ref.dim != self.dim:
            raise ValueError(f"Dataset.standardized: using has {ref.dim} features, this set {self.dim}")
        mean = ref.features.mean(axis=0)
        std = ref.features.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return type(self)((self.features - mean) / std, self.labels, name=f"{self.name} (standardized)".strip(),
                          classes=self.classes)


ACTIVATIONS = {"tanh": Tanh, "relu": ReLU, "sigmoid": Sigmoid, "identity": Identity}
LOSSES = ("logistic", "softmax")


def mlp(in_dim: int, widths=(), activation: str = "tanh", bias: bool = True, loss: str = "logistic",
        classes: int | None = None) -> Composite:
    """A multilayer perceptron as a chain of library operators:

    Affine(in_dim → widths[0]), activation, …, Affine(widths[-2] → widths[-1]), activation, then

    * ``loss="logistic"``: Affine(→ 1) and :class:`~fbsgd.operators.LogisticLoss` (labels ±1;
      ``classes`` None or 2);
    * ``loss="softmax"``: Affine(→ K) and :class:`~fbsgd.operators.SoftmaxCrossEntropy` (labels
      0..K−1; ``classes=K`` ≥ 2 required).

    ``widths`` are the hidden widths (empty: a linear model); ``activation`` one of "tanh", "relu",
    "sigmoid", "identity"; ``bias=False`` drops every b.  ``net.init_weight(rng)`` draws W ~ N(0, 1/in),
    b = 0.  The chain's operators are numbered 1..N as in :class:`~fbsgd.passes.Composite`: for one
    hidden layer, 1 = Affine, 2 = activation, 3 = Affine, 4 = loss.
    """
    who = "mlp"
    _need_int(who, "in_dim", in_dim, 1)
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise ValueError(f"{who}: widths must be a list of hidden widths (integers >= 1; [] for none), got {widths!r}")
    widths = list(widths)
    for k, v in enumerate(widths):
        _need_int(who, f"widths[{k}]", v, 1)
    if activation not in ACTIVATIONS:
        raise ValueError(f"{who}: activation must be one of {', '.join(map(repr, ACTIVATIONS))}, got {activation!r}")
    if not isinstance(bias, (bool, np.bool_)):
        raise ValueError(f"{who}: bias must be True or False, got {bias!r}")
    if loss not in LOSSES:
        raise ValueError(f"{who}: loss must be 'logistic' (labels ±1) or 'softmax' (labels 0..K-1), got {loss!r}")
    if loss == "softmax":
        if classes is None:
            raise ValueError(f"{who}: loss='softmax' needs classes=K (an integer >= 2, the number of classes)")
        _need_int(who, "classes", classes, 2)
        head = [Affine(([in_dim] + widths)[-1], int(classes), bias=bool(bias)), SoftmaxCrossEntropy(int(classes))]
    else:
        if classes not in (None, 2) or isinstance(classes, bool):
            raise ValueError(f"{who}: loss='logistic' is a binary loss (labels ±1): classes must be None or 2, got "
                             f"{classes!r} (use loss='softmax' for K classes)")
        head = [Affine(([in_dim] + widths)[-1], 1, bias=bool(bias)), LogisticLoss()]
    ops = []
    for d_in, d_out in zip([in_dim] + widths[:-1], widths):
        ops += [Affine(d_in, d_out, bias=bool(bias)), ACTIVATIONS[activation](d_out)]
    return Composite(ops + head)
