"""Additive versus accumulative errors (Section 1.4, eqs. (6a)–(6b)), judged.

The measurements are :func:`fbsgd.studies.error_propagation.injection.depth_amplification`: the error
‖ũ₁ − u₁‖ that one backward perturbation ε_N at the deepest operator of a
linear network leaves in the first weight gradient, for several depths N and
layer norms s.  By (6b) it is ‖W₂ᵀ⋯W_(N−1)ᵀ ε_N‖·‖x‖, so for layers that
stretch every vector by s it is exactly s^{N−2}‖ε_N‖‖x‖: a factor s per layer.

Here: the fitted factor per layer (:func:`growth_factors`) and the verdicts of
the setting chapter, each a :class:`fbsgd.book.verdicts.Verdict`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.book import verdicts as V
from fbsgd.metrics import log_slope
from fbsgd.book.report import number

__all__ = ["ORTHOGONAL_TOL", "CLOSED_FORM_TOL", "growth_factors", "closed_form_gap",
           "judge_closed_form", "judge_orthogonal_growth", "judge_gaussian_factor", "judge_all"]

ORTHOGONAL_TOL = 1e-6  # largest relative deviation of the fitted factor from s for "a factor s per layer"
CLOSED_FORM_TOL = 1e-9  # largest relative gap between the passes and the closed form (6b)


def growth_factors(table: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, scale): the factor per layer exp(b), b the least-squares slope of
    log ‖ũ₁ − u₁‖ against the depth N; with its relative deviation from s."""
    rows = []
    for (kind, s), g in table.groupby(["kind", "scale"], sort=False):
        factor = float(np.exp(log_slope(g.depth, g.accumulative, log_x=False).slope))
        rows.append(dict(kind=kind, scale=float(s), factor=factor, deviation_from_s=abs(factor - s) / s))
    return pd.DataFrame(rows)


def closed_form_gap(table: pd.DataFrame) -> float:
    """Largest relative gap |measured / closed form − 1| over all networks."""
    return float(np.max(np.abs(table.accumulative / table.closed_form - 1)))


def judge_closed_form(claim: V.Claim, table: pd.DataFrame, tol: float = CLOSED_FORM_TOL) -> V.Verdict:
    """The perturbed passes carry ε_N to u₁ exactly as the product (6b) says."""
    gap = closed_form_gap(table)
    return V.Verdict(claim, "holds" if gap < tol else "fails",
                     rule=f"largest relative gap between ‖ũ₁ − u₁‖ from the passes and "
                          f"‖W₂ᵀ⋯W_(N−1)ᵀ ε_N‖·‖x‖ < {number(tol, 1)}",
                     evidence=f"the passes and the closed form agree to {number(gap, 2)} over all {len(table)} networks "
                              f"(both layer families, every depth and scale).",
                     key_number=gap, key_label="largest relative gap", threshold=f"< {number(tol, 1)}")


def judge_orthogonal_growth(claim: V.Claim, factors: pd.DataFrame, eps_norm: float,
                            tol: float = ORTHOGONAL_TOL) -> V.Verdict:
    """Layers that stretch every vector by s: the error changes by exactly s per layer."""
    orth = factors[factors.kind == "orthogonal"]
    ok = orth.deviation_from_s < tol
    worst = float(orth.deviation_from_s.max()) if len(orth) else float("nan")
    grow = ", ".join(f"s = {r.scale:g}: ×{r.factor:.4f}" for r in orth.itertuples())
    return V.Verdict(claim, V.outcome_of_cases(ok),
                     rule=f"at every scale s, the fitted factor per layer is within relative {number(tol, 1)} of s",
                     evidence=f"fitted factor per layer, orthogonal layers: {grow} (largest relative deviation from s: "
                              f"{number(worst, 2)}); an additive error (6a) would stay at {number(eps_norm)} at every depth.",
                     key_number=worst, key_label="largest relative deviation from s",
                     threshold=f"< {number(tol, 1)} at every s")


def judge_gaussian_factor(claim: V.Claim, factors: pd.DataFrame) -> V.Verdict:
    """Gaussian layers of norm s stretch a typical vector by less than s: the factor per layer is below s."""
    gauss = factors[factors.kind == "gaussian"]
    below = gauss.factor < gauss.scale
    shrink = gauss[gauss.factor < 1]
    grows = gauss[gauss.factor > 1]
    listed = ", ".join(f"s = {r.scale:g}: ×{r.factor:.3f}" for r in gauss.itertuples())
    if len(gauss) and len(shrink) == len(gauss):
        trend = "Every factor is below 1, so for these layers the error shrinks with depth, even where s > 1."
    elif len(grows) == len(gauss):
        trend = "Every factor is above 1, so the error grows with depth, though more slowly than s per layer."
    else:
        trend = (f"The error shrinks with depth at {len(shrink)} of {len(gauss)} scales (factor below 1) "
                 f"and grows at {len(grows)}.")
    ratio = float((gauss.factor / gauss.scale).max()) if len(gauss) else float("nan")
    return V.Verdict(claim, V.outcome_of_cases(below),
                     rule="at every scale s, the fitted factor per layer (exp of the slope of log‖ũ₁ − u₁‖ against N) < s",
                     evidence=f"fitted factor per layer, Gaussian layers: {listed}. {trend}",
                     key_number=ratio, key_label="largest factor / s", threshold="< 1 at every s")


def judge_all(ledger: V.Ledger, table: pd.DataFrame, eps_norm: float) -> list[V.Verdict]:
    """The setting chapter's verdicts, in page order."""
    factors = growth_factors(table)
    return [judge_closed_form(ledger.claim("closed_form"), table),
            judge_orthogonal_growth(ledger.claim("geometric_amplification"), factors, eps_norm),
            judge_gaussian_factor(ledger.claim("gaussian_factor"), factors)]
