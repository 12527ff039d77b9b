"""How a perturbation injected inside the passes reaches the weight gradient
(Section 1.4.2 and Section 4).

:func:`depth_amplification` is the numeric form of the additive-vs-
accumulative example (6a)/(6b): a linear network, no forward perturbation and
one backward perturbation at the deepest operator, ε_N.  In the accumulative
model (5b) it reaches the first weight gradient as
ũ₁ − u₁ = (W₂ᵀ⋯W_{N−1}ᵀ ε_N) xᵀ, while an additive model would leave an error
of ‖ε_N‖ whatever the depth.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .operators import Linear
from .passes import Composite, passes, perturbed_passes
from .perturbations import Constant, Plan

__all__ = ["scaled_layers", "depth_amplification"]


def scaled_layers(depth: int, width: int, scale: float, kind: str = "orthogonal", seed: int = 0):
    """A linear network of ``depth`` operators: depth−1 square layers W_i with
    ‖W_i‖_op = scale, then a readout row to a scalar.  Returns (net, w, Ws).

    ``orthogonal``: W_i = scale·Q_i with Q_i Haar-random orthogonal, so every
    vector is stretched by exactly ``scale``.  ``gaussian``: Gaussian W_i
    rescaled to spectral norm ``scale`` (a typical vector is stretched less).
    """
    if depth < 2:
        raise ValueError(f"depth must be >= 2, got {depth}")
    if kind not in ("orthogonal", "gaussian"):
        raise ValueError(f"kind must be 'orthogonal' or 'gaussian', got {kind!r}")
    rng = np.random.default_rng(seed)
    Ws = []
    for _ in range(depth - 1):
        G = rng.standard_normal((width, width))
        if kind == "orthogonal":
            Q, R = np.linalg.qr(G)
            W = scale * Q * np.sign(np.diag(R))
        else:
            W = scale * G / np.linalg.norm(G, 2)
        Ws.append(W)
    readout = rng.standard_normal((1, width)) / np.sqrt(width)
    Ws.append(readout)
    net = Composite([Linear(width, width) for _ in range(depth - 1)] + [Linear(width, 1)])
    return net, np.concatenate([W.ravel() for W in Ws]), Ws


def depth_amplification(depths, width: int, scales, eps_norm: float = 1e-3, kind: str = "orthogonal", seed: int = 0) -> pd.DataFrame:
    """Error in the first weight gradient from a constant backward perturbation
    ε_N (‖ε_N‖ = eps_norm) at the deepest operator, per depth and layer scale.

    Columns: depth, scale, kind, accumulative (measured ‖ũ₁ − u₁‖ through the
    perturbed passes), additive (the same ε added to u₁ directly, eq. 6a),
    closed_form (‖W₂ᵀ⋯W_{N−1}ᵀ ε_N‖·‖x‖ computed by matrix products).
    """
    rows = []
    rng = np.random.default_rng(seed + 10_000)
    x = rng.standard_normal((1, width))
    x /= np.linalg.norm(x)
    eps = rng.standard_normal(width)
    eps *= eps_norm / np.linalg.norm(eps)
    for scale in scales:
        for depth in depths:
            net, w, Ws = scaled_layers(depth, width, scale, kind, seed)
            plan = Plan(backward={depth: Constant(eps)})
            clean = passes(net, x, w)
            pert, _ = perturbed_passes(net, x, w, plan, plan.init(seed))
            measured = np.linalg.norm(pert.us[1] - clean.us[1])
            e = eps.copy()
            for W in reversed(Ws[1 : depth - 1]):  # W₂ᵀ⋯W_{N−1}ᵀ ε_N
                e = W.T @ e
            rows.append(dict(depth=depth, scale=scale, kind=kind, accumulative=measured,
                             additive=eps_norm, closed_form=np.linalg.norm(e) * np.linalg.norm(x)))
    return pd.DataFrame(rows)
