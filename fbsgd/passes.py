"""Forward, backward and gradient passes, clean (eq. 4) and perturbed (eq. 5).

The chain rule is written out once, in :func:`perturbed_passes`; the two
lines marked (5a) and (5b) are where δ_i and ε_i enter.  Without a plan the
same function is the clean algorithm (4).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .operators import Operator
from .perturbations import Plan

__all__ = ["Composite", "Passes", "passes", "perturbed_passes"]


class Composite:
    """The composite map F(x; w) = f_N(...f_2(f_1(x, w_1), w_2)..., w_N) of eq. (1b).

    Operators are numbered 1..N as in the paper (``op(i)``); the global weight
    ``w`` is the concatenation (w_1, ..., w_N).
    """

    def __init__(self, ops: Sequence[Operator]):
        if len(ops) < 1:
            raise ValueError("a composite needs at least one operator")
        for a, b in zip(ops[:-1], ops[1:]):
            if a.out_dim != b.in_dim:
                raise ValueError(f"operator {a!r} outputs {a.out_dim} values but {b!r} expects {b.in_dim}")
        if ops[-1].out_dim != 1:
            raise ValueError(f"the last operator must output a scalar loss, {ops[-1]!r} outputs {ops[-1].out_dim}")
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

    def split(self, w: np.ndarray) -> list[np.ndarray]:
        """[w_1, ..., w_N] as views of the flat weight (index 0 unused: None)."""
        if w.shape != (self.weight_size,):
            raise ValueError(f"weight must have shape ({self.weight_size},), got {w.shape}")
        return [None] + [w[self.offsets[i] : self.offsets[i + 1]] for i in range(len(self))]

    def value(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """F(x; w) for each sample, shape (B,)."""
        return passes(self, x, w).ys[-1][:, 0]

    def init_weight(self, rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([op.init_weight(rng) for op in self.ops])

    def __repr__(self) -> str:
        return " -> ".join(repr(op) for op in self.ops)


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


def perturbed_passes(net: Composite, x: np.ndarray, w: np.ndarray, plan: Plan | None = None, state: dict | None = None):
    """One perturbed forward/backward/gradient pass, eq. (5a)-(5c).

    Returns ``(Passes, new_state)``; the plan's state advances one step.
    """
    plan = plan if plan is not None else Plan()
    plan.validate(len(net))
    state = state if state is not None else {}
    w = np.asarray(w, dtype=float)
    ws, N = net.split(w), len(net)
    x = np.atleast_2d(np.asarray(x, dtype=float))
    _finite_input("w (the weights)", w)
    _finite_input("x (the data)", x)

    ys = [x]
    for i in range(1, N + 1):  # forward pass
        y = net.op(i).forward(ys[i - 1], ws[i])
        y, state = plan.perturb("forward", i, y, state)  # (5a): + δ_i
        ys.append(y)

    vs = [None] * (N + 1)
    us = [None] * (N + 1)
    vs[N] = np.ones((x.shape[0], 1))  # v_N = ∂y_N/∂y_N = 1
    for i in range(N, 0, -1):  # backward pass
        f = net.op(i)
        us[i] = f.vjp_weight(ys[i - 1], ws[i], vs[i])  # (5c): ũ_i = ∇₂f_iᵀ ṽ_i
        if i >= 2:
            v = f.vjp_input(ys[i - 1], ws[i], vs[i])  # ∇₁f_iᵀ ṽ_i
            vs[i - 1], state = plan.perturb("backward", i, v, state)  # (5b): + ε_i
    return Passes(ys, vs, us), state


def passes(net: Composite, x: np.ndarray, w: np.ndarray) -> Passes:
    """The clean passes of eq. (4a)-(4c)."""
    return perturbed_passes(net, x, w)[0]
