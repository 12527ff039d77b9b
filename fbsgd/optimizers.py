"""Update rules (eq. 4d / 5d and its momentum variant) as small stateful objects.

``update(g, state, w) -> (step, state)`` with ``w_next = w - step``, the
optax convention.  :func:`descend` runs a deterministic full-batch loop on a
:class:`~fbsgd.passes.Composite`; it serves the small examples of the book
(Appendix A, forward gradients).  The Section 7 sweeps use the compiled
engine in :mod:`fbsgd.engine` instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .passes import Composite, perturbed_passes
from .perturbations import Plan

__all__ = ["SGD", "HeavyBall", "descend"]


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


def descend(
    net: Composite,
    x: np.ndarray,
    w0: np.ndarray,
    optimizer,
    steps: int,
    plan: Plan | None = None,
    seed: int = 0,
    regularizer_grad: Callable[[np.ndarray], np.ndarray] | None = None,
    stop_above: float = 1e12,
) -> np.ndarray:
    """Full-batch (perturbed) gradient descent; returns the iterates, shape (≤steps+1, d).

    The loop stops early (returning the iterates so far) once ‖w‖ exceeds
    ``stop_above``, so a diverging example never overflows.
    """
    plan = plan or Plan()
    state = plan.init(seed)
    w = np.array(w0, dtype=float)
    opt_state = optimizer.init(w)
    out = [w.copy()]
    for _ in range(steps):
        p, state = perturbed_passes(net, x, w, plan, state)
        g = p.gradient()
        if regularizer_grad is not None:
            g = g + regularizer_grad(w)
        step, opt_state = optimizer.update(g, opt_state, w)
        w = w - step
        out.append(w.copy())
        if not np.all(np.isfinite(w)) or np.linalg.norm(w) > stop_above:
            break
    return np.array(out)
