"""The bit-flip recovery atlas: exponent-bit flips as spikes in the forward or the backward pass
of the Section 7 logistic regression, over flip rates and step sizes {cite}`kong2026perturbed`.

Each cell (place, rate, γ) is classified from its runs (:func:`classify_cells`): **diverged**
(some seed blew up), **recovered** (stable norm within RECOVERY_FACTOR of standard SGD's at the
same γ, geometric means over seeds) or **plateau** (neither).  A flip rate r per bit of a field of
b bits over M entries per step perturbs an iteration with probability 1 − (1 − r)^{bM}, so
Q ≈ T(1 − (1 − r)^{bM}) perturbed iterations (:func:`expected_budget`).  Table 1 (Section 6.2)
guarantees the rate for Q ≲ T^a; a spike is not zero-mean, so a = 1/2 in both passes for the
non-convex problem (:data:`fbsgd.theory.table1.PAPER_TABLE1`).  Its boundary is a sufficient condition:
:func:`boundary_verdict` fails only if a cell inside it does not recover.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.lowprec import FIELDS
from fbsgd.perturbations import BitFlip
from fbsgd.studies.section7.verdicts import RECOVERY_FACTOR, geometric_mean
from fbsgd.engine.sweeps import RunConfig
from fbsgd.theory.table1 import PAPER_TABLE1
from fbsgd.book.verdicts import Verdict, outcome_of_cases

__all__ = ["atlas_configs", "expected_budget", "budget_exponent", "classify_cells", "boundary_rate",
           "boundary_verdict", "fragility_verdict"]


def atlas_configs(rates, gammas, seeds, field: str = "exponent", places=("forward", "backward"), **common) -> list[RunConfig]:
    """Standard SGD and a BitFlip(rate, field) at each place, rate, γ and seed (figure "rate=r", panel = place)."""
    out = []
    for g in gammas:
        for s in seeds:
            out.append(RunConfig(figure="standard SGD", panel="baseline", gamma=g, seed=s, **common))
            out += [RunConfig(figure=f"rate={r:g}", panel=pl, gamma=g, seed=s, **{pl: BitFlip(r, field)}, **common)
                    for r in rates for pl in places]
    return out


def expected_budget(rate, T: int, M: int, field: str = "exponent"):
    """Expected number of iterations with at least one flip: T(1 − (1 − rate)^{bM}), b the field's bits."""
    bits = FIELDS[field][1]
    return T * -np.expm1(bits * M * np.log1p(-np.asarray(rate, dtype=float)))


def budget_exponent(place: str, geometry: str = "nonconvex") -> float:
    """Table 1's budget exponent a for a perturbation that is not zero-mean (Q ≲ T^a keeps the rate)."""
    return PAPER_TABLE1[(geometry, place, "nonzero")]


def boundary_rate(T: int, M: int, a: float, field: str = "exponent") -> float:
    """The rate at which the expected budget equals T^a (solve T(1 − (1 − r)^{bM}) = T^a)."""
    bits = FIELDS[field][1]
    return float(-np.expm1(np.log1p(-(T ** (a - 1.0))) / (bits * M)))


def classify_cells(table: pd.DataFrame, T: int, M: int, field: str = "exponent") -> pd.DataFrame:
    """One row per (place, rate, γ): the class, the stable norm over standard SGD's, the expected
    budget Q, Table 1's T^a, and whether the cell is inside Table 1's boundary (Q ≤ T^a)."""
    base = table[table.panel == "baseline"].groupby("gamma").stable_grad_norm.apply(geometric_mean)
    rows = []
    for (place, fig, g), c in table[table.panel != "baseline"].groupby(["panel", "figure", "gamma"], sort=False):
        rate = float(fig.split("=")[1])
        ratio = geometric_mean(c.stable_grad_norm) / base[g] if not c.diverged.any() else np.nan
        cls = "diverged" if c.diverged.any() else ("recovered" if ratio <= RECOVERY_FACTOR else "plateau")
        a = budget_exponent(place)
        Q = float(expected_budget(rate, T, M, field))
        rows.append(dict(place=place, rate=rate, gamma=g, cls=cls, over_sgd=ratio, diverged_runs=int(c.diverged.sum()),
                         runs=len(c), expected_budget=Q, budget_bound=T**a, within_bound=Q <= T**a))
    return pd.DataFrame(rows).sort_values(["place", "rate", "gamma"], ignore_index=True)


def boundary_verdict(claim, cells: pd.DataFrame, name: str) -> Verdict:
    """Table 1's boundary is sufficient: every cell with Q ≤ T^a recovers (unresolved if no cell is inside)."""
    inside = cells[cells.within_bound]
    outside = cells[~cells.within_bound]
    rule = (f"every cell with expected budget Q ≤ T^a (a from Table 1 for a biased perturbation) is recovered: stable norm "
            f"≤ {RECOVERY_FACTOR:g}× standard SGD's, no seed diverged; holds if all are, fails if one is not; "
            f"unresolved if no cell of the grid is inside the boundary")
    if not len(inside):
        return Verdict(claim(name), "unresolved", rule=rule, evidence="no cell of the grid has Q ≤ T^a.")
    ok = (inside.cls == "recovered").all()
    counts = outside.cls.value_counts().to_dict()
    ev = (f"inside the boundary: {int((inside.cls == 'recovered').sum())} of {len(inside)} cells recovered "
          f"(rates {', '.join(f'{r:g}' for r in sorted(inside.rate.unique()))}, T^a = {inside.budget_bound.iloc[0]:.3g}); "
          f"outside: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ".")
    ev += (" Book's note: Table 1 covers perturbations of bounded size; exponent flips can make an entry huge or "
           "non-finite (see the exponent-flip verdict), so a cell that fails inside the boundary lies outside Table 1's "
           "hypotheses and is not a counterexample to the paper.")
    return Verdict(claim(name), "holds" if ok else "fails", rule=rule, evidence=ev,
                   key_number=float((inside.cls == "recovered").mean()),
                   key_label="fraction of cells inside the boundary that recover")


def fragility_verdict(claim, cells: pd.DataFrame, name: str) -> Verdict:
    """The forward pass is the fragile one: at each γ the smallest rate that does not recover is lower
    forward than backward (never failing counts as above the grid); equal rates are ties."""
    first = {}
    for (place, g), c in cells.groupby(["place", "gamma"]):
        bad = c[c.cls != "recovered"].rate
        first[(place, g)] = float(bad.min()) if len(bad) else np.inf
    gammas = sorted(cells.gamma.unique())
    cmp = [(g, first.get(("forward", g), np.nan), first.get(("backward", g), np.nan)) for g in gammas]
    decided = [(g, f, b) for g, f, b in cmp if f != b]
    rule = ("at each γ, the smallest flip rate whose cell is not recovered is lower in the forward pass than in the "
            "backward pass (∞ if every rate recovers); holds: every γ where they differ; partial: some; fails: none; "
            "unresolved: equal at every γ")
    ev = "; ".join(f"γ = {g:g}: forward {f:g}, backward {b:g}" for g, f, b in cmp) + "."
    outcome = "unresolved" if not decided else outcome_of_cases([f < b for _, f, b in decided])
    return Verdict(claim(name), outcome, rule=rule, evidence=ev)
