"""Forward, backward and gradient passes, clean (eq. 4) and perturbed (eq. 5).

The chain rule is written out once, in :func:`perturbed_passes`; the two
lines marked (5a) and (5b) are where δ_i and ε_i enter.  Without a plan the
same function is the clean algorithm (4).

A chain may end in a loss operator that reads the samples' labels
(``uses_labels``: :class:`~fbsgd.operators.LogisticLoss`,
:class:`~fbsgd.operators.SoftmaxCrossEntropy`); the labels are then given as
``labels=`` and reach that operator only, never perturbed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fbsgd.operators import LogisticScore, Operator
from fbsgd.perturbations import Plan, canonical

__all__ = ["Composite", "Passes", "passes", "perturbed_passes", "check_net", "check_data", "check_labels",
           "WithLabels"]


class Composite:
    """The composite map F(x; w) = f_N(...f_2(f_1(x, w_1), w_2)..., w_N) of eq. (1b).

    Operators are numbered 1..N as in the paper (``op(i)``); the global weight
    ``w`` is the concatenation (w_1, ..., w_N).
    """

    def __init__(self, ops: Sequence[Operator]):
        if isinstance(ops, (Composite, Operator, str, bytes)) or not hasattr(ops, "__iter__"):
            hint = " (already a Composite: use it as it is)" if isinstance(ops, Composite) else ""
            raise ValueError(f"Composite: ops must be a list of operators (fbsgd.operators), "
                             f"got {type(ops).__name__}{hint}")
        ops = list(ops)
        if len(ops) < 1:
            raise ValueError("a composite needs at least one operator")
        for k, op in enumerate(ops):
            if not isinstance(op, Operator):
                raise ValueError(f"Composite: ops[{k}] must be an operator (an instance of fbsgd.operators.Operator), "
                                 f"got {type(op).__name__} {op!r:.60}")
        for a, b in zip(ops[:-1], ops[1:]):
            if a.out_dim != b.in_dim:
                raise ValueError(f"operator {a!r} outputs {a.out_dim} values but {b!r} expects {b.in_dim}")
        if ops[-1].out_dim != 1:
            raise ValueError(f"the last operator must output a scalar loss, {ops[-1]!r} outputs {ops[-1].out_dim}")
        for k, op in enumerate(ops[:-1]):
            if op.uses_labels:
                raise ValueError(f"Composite: ops[{k}] = {op!r} is a loss operator that reads the labels; "
                                 f"it must be the last operator of the chain, not operator {k + 1} of {len(ops)}")
        self.ops = list(ops)
        self.sizes = [op.weight_size for op in ops]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)

    def __len__(self) -> int:
        return len(self.ops)

    def op(self, i: int) -> Operator:
        return self.ops[i - 1]

    @property
    def weight_size(self) -> int:
        return int(self.offsets[-1])

    @property
    def uses_labels(self) -> bool:
        """True when the last operator is a loss that reads the labels (the passes then need ``labels=``)."""
        return bool(self.ops[-1].uses_labels)

    def split(self, w: np.ndarray) -> list[np.ndarray]:
        """[w_1, ..., w_N] as views of the flat weight (index 0 unused: None)."""
        if w.shape != (self.weight_size,):
            raise ValueError(f"weight must have shape ({self.weight_size},), got {w.shape}")
        return [None] + [w[self.offsets[i] : self.offsets[i + 1]] for i in range(len(self))]

    def value(self, x: np.ndarray, w: np.ndarray, labels=None) -> np.ndarray:
        """F(x; w) for each sample, shape (B,) (``labels`` as for :func:`passes`)."""
        return passes(self, x, w, labels).ys[-1][:, 0]

    def init_weight(self, rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([op.init_weight(rng) for op in self.ops])

    def __repr__(self) -> str:
        return " -> ".join(repr(op) for op in self.ops)

    def __fbsgd_canonical__(self) -> str:
        """Its identity for caches and streams (:func:`fbsgd.perturbations.canonical`): the canonical
        form of each operator (its fields; a user's own operator class with its source hash)."""
        return "Composite([" + ", ".join(canonical(op) for op in self.ops) + "])"


@dataclass
class Passes:
    """Everything one pass computes, indexed as in the paper (index 0 of vs/us unused).

    ys[i] = ỹ_i (i = 0..N, ys[0] = x),  vs[i] = ṽ_i (i = 1..N, vs[N] = 1),
    us[i] = ũ_i per sample, shape (B, d_{w_i}).
    """

    ys: list
    vs: list
    us: list

    def gradient(self) -> np.ndarray:
        """Batch mean of the weight gradient (ũ_1, ..., ũ_N), flattened."""
        return np.concatenate([u.mean(axis=0) for u in self.us[1:]])

    def per_sample_gradient(self) -> np.ndarray:
        return np.concatenate(self.us[1:], axis=1)


def _finite_input(name: str, a: np.ndarray) -> None:
    if not np.isfinite(a).all():
        bad = int(np.size(a) - np.isfinite(a).sum())
        raise ValueError(f"perturbed_passes: {name} has {bad} non-finite entries (NaN or inf); the passes need finite inputs")


def check_net(net, who: str = "perturbed_passes", name: str = "net") -> Composite:
    """``net`` itself if it is a :class:`Composite`; otherwise a ValueError that says how to make one."""
    if isinstance(net, Composite):
        return net
    hint = ""
    if isinstance(net, (list, tuple)) and net and all(isinstance(op, Operator) for op in net):
        hint = f" — wrap it: Composite({'[...]' if isinstance(net, list) else '(...)'})"
    elif isinstance(net, Operator):
        hint = f" — wrap it: Composite([{net!r}, ...]), the last operator giving the scalar loss"
    raise ValueError(f"{who}: {name} must be a Composite of operators (fbsgd.passes.Composite), "
                     f"got {type(net).__name__}{hint}")


_REAL_KINDS = "biuf"  # bool, signed and unsigned integers, floats: what converts to float exactly as numbers
_F64 = np.dtype(float)


def _real_array(a, who: str, name: str) -> np.ndarray:
    """``a`` as an array after refusing text, complex numbers and objects (``np.asarray(x, dtype=float)``
    would parse numeric strings or drop an imaginary part without a word)."""
    if type(a) is np.ndarray and a.dtype.kind in _REAL_KINDS:  # the common case, at no cost
        return a
    arr = np.asarray(a)
    if arr.dtype.kind not in _REAL_KINDS:
        raise ValueError(f"{who}: {name} must hold real numbers (bool, int or float), got dtype {arr.dtype}"
                         + (" (text)" if arr.dtype.kind in "US" else ""))
    return arr


def check_data(net: Composite | None, x, who: str = "perturbed_passes", name: str = "x (the data)") -> np.ndarray:
    """The data as a float array of shape (B, d_0), one row per sample, after refusing what the passes
    cannot use: text or complex entries, an array that is not 2-D (a 1-D array is one sample), no rows,
    or (given ``net``) a number of columns other than the first operator's input width.

    O(1) apart from the conversion the passes always did; the check for NaN/inf is separate
    (:func:`perturbed_passes` makes it on every call).
    """
    if type(x) is np.ndarray and x.dtype is _F64 and x.ndim == 2:  # the loops' case: no conversion to make
        rows, cols = x.shape
        if rows and (net is None or cols == net.ops[0].in_dim):
            return x
    x = np.atleast_2d(np.asarray(_real_array(x, who, name), dtype=float))  # as the passes always converted
    if x.ndim == 2 and x.shape[0] and (net is None or x.shape[1] == net.ops[0].in_dim):
        return x
    width = net.op(1).in_dim if net is not None else None
    if x.ndim != 2:
        cols = f" with {width} columns (the input width of {net.op(1)!r})" if width is not None else ""
        raise ValueError(f"{who}: {name} must be a 2-D array of real numbers, one row per sample{cols}, "
                         f"got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{who}: {name} has 0 rows; at least one sample is needed")
    if width is not None and x.shape[1] != width:
        raise ValueError(f"{who}: {name} must have {width} columns per sample (the input width of the first operator, "
                         f"{net.op(1)!r}), got shape {x.shape}")
    return x


def check_labels(net: Composite, labels, rows: int, who: str = "perturbed_passes"):
    """The labels as the chain's loss reads them (``None`` for a chain that reads none), after
    refusing missing labels for a chain that reads them, labels for a chain that reads none, and
    labels of the wrong kind or count (each a ValueError naming ``labels``)."""
    last = net.ops[-1]
    if not last.uses_labels:
        if labels is None:
            return None
        hint = (" (its labels are the last column of each row of x)" if any(isinstance(op, LogisticScore) for op in net.ops)
                else "")
        raise ValueError(f"{who}: labels were given, but the chain's last operator {last!r} reads none{hint}; "
                         "labels reach only a loss operator that reads them (uses_labels: LogisticLoss, "
                         "SoftmaxCrossEntropy) — drop labels=, or end the chain in such a loss")
    if labels is None:
        raise ValueError(f"{who}: the chain ends in {last!r}, which reads one label per sample: give labels=... "
                         f"(a 1-D array with one label per row of x, {rows})")
    return last.check_labels(labels, rows, who)


class WithLabels:
    """A loss operator with one batch's labels bound, so the passes call it as any f_i(y, w)."""

    def __init__(self, op: Operator, labels):
        self.op, self.labels = op, labels

    def forward(self, y, w):
        return self.op.forward(y, w, labels=self.labels)

    def vjp_input(self, y, w, v):
        return self.op.vjp_input(y, w, v, labels=self.labels)

    def vjp_weight(self, y, w, v):
        return self.op.vjp_weight(y, w, v, labels=self.labels)

    def jvp(self, y, w, dy, dw):
        return self.op.jvp(y, w, dy, dw, labels=self.labels)


def _checked_inputs(net, x, w, plan, state):
    """The arguments of :func:`perturbed_passes` after refusing what the passes cannot use
    (each refusal names the argument): ``(plan, state, x, w)`` with defaults filled in."""
    check_net(net)
    plan = plan if plan is not None else Plan()
    if not isinstance(plan, Plan):
        raise ValueError(f"perturbed_passes: plan must be a Plan (fbsgd.Plan(forward={{i: ...}}, backward={{i: ...}})) "
                         f"or None, got {type(plan).__name__}")
    plan.validate(len(net))
    state = state if state is not None else {}
    if not (type(w) is np.ndarray and w.dtype is _F64):
        w = np.asarray(_real_array(w, "perturbed_passes", "w (the weights)"), dtype=float)
    x = check_data(net, x)
    _finite_input("w (the weights)", w)
    _finite_input("x (the data)", x)
    return plan, state, x, w


def perturbed_passes(net: Composite, x: np.ndarray, w: np.ndarray, plan: Plan | None = None, state: dict | None = None,
                     labels=None):
    """One perturbed forward/backward/gradient pass, eq. (5a)-(5c).

    ``labels`` (one per row of ``x``) reach only the chain's last operator,
    a loss that reads them (``uses_labels``); they are never perturbed.

    Returns ``(Passes, new_state)``; the plan's state advances one step.
    """
    plan, state, x, w = _checked_inputs(net, x, w, plan, state)
    labels = check_labels(net, labels, x.shape[0])  # None if f_N reads none
    ws, N = net.split(w), len(net)
    ops = [None, *net.ops]  # ops[i] = f_i
    if labels is not None:  # f_N reads them: bound to it, never perturbed
        ops[N] = WithLabels(ops[N], labels)

    ys = [x]
    for i in range(1, N + 1):  # forward pass
        y = ops[i].forward(ys[i - 1], ws[i])
        y, state = plan.perturb("forward", i, y, state)  # (5a): + δ_i
        ys.append(y)

    vs = [None] * (N + 1)
    us = [None] * (N + 1)
    vs[N] = np.ones((x.shape[0], 1))  # v_N = ∂y_N/∂y_N = 1
    for i in range(N, 0, -1):  # backward pass
        f = ops[i]
        us[i] = f.vjp_weight(ys[i - 1], ws[i], vs[i])  # (5c): ũ_i = ∇₂f_iᵀ ṽ_i
        if i >= 2:
            v = f.vjp_input(ys[i - 1], ws[i], vs[i])  # ∇₁f_iᵀ ṽ_i
            vs[i - 1], state = plan.perturb("backward", i, v, state)  # (5b): + ε_i
    return Passes(ys, vs, us), state


def passes(net: Composite, x: np.ndarray, w: np.ndarray, labels=None) -> Passes:
    """The clean passes of eq. (4a)-(4c) (``labels`` as for :func:`perturbed_passes`)."""
    return perturbed_passes(net, x, w, labels=labels)[0]
