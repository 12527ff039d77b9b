"""The bit-flip recovery atlas: exponent-bit flips as spikes in the forward or the backward pass
of the Section 7 logistic regression, over flip rates and step sizes {cite}`kong2026perturbed`.

Each seed of a cell (place, rate, γ) is classified on its own (:func:`classify_cells`): **diverged**
(the run blew up), **recovered** (stable norm within RECOVERY_FACTOR of standard SGD's at the same
γ, geometric mean over its seeds) or **plateau** (neither).  The cell takes a class only when at
least :data:`ATLAS_MIN_SEEDS` of its seeds share it, so no single seed decides a mark; otherwise it
is undecided ("?").  The verdicts count only decided cells and say how many were undecided.  A flip rate r per bit of a field of
b bits over M entries per step perturbs an iteration with probability 1 − (1 − r)^{bM}, so
Q ≈ T(1 − (1 − r)^{bM}) perturbed iterations (:func:`expected_budget`).  Table 1 (Section 6.2)
guarantees the rate for Q ≲ T^a; a spike is not zero-mean, so a = 1/2 in both passes for the
non-convex problem (:data:`fbsgd.theory.table1.PAPER_TABLE1`).  Its boundary is a sufficient condition:
:func:`boundary_verdict` fails only if a cell inside it does not recover.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fbsgd.lowprec import FIELDS
from fbsgd.perturbations import BitFlip
from fbsgd.studies.section7.verdicts import RECOVERY_FACTOR, geometric_mean
from fbsgd.engine.sweeps import RunConfig
from fbsgd.theory.table1 import PAPER_TABLE1
from fbsgd.book.verdicts import Verdict, outcome_of_cases

__all__ = ["ATLAS_MIN_SEEDS", "UNDECIDED", "atlas_configs", "expected_budget", "budget_exponent", "classify_cells",
           "boundary_rate", "boundary_verdict", "TABLE1_C", "table1_gamma_max", "fragility_verdict"]

ATLAS_MIN_SEEDS = 3  # a cell's class needs at least this many of its seeds to share it
UNDECIDED = "?"  # the class of a cell whose seeds do not agree often enough


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



def _seed_class(diverged: bool, norm: float, base: float) -> str:
    if diverged:
        return "diverged"
    return "recovered" if norm / base <= RECOVERY_FACTOR else "plateau"


def classify_cells(table: pd.DataFrame, T: int, M: int, field: str = "exponent",
                   min_seeds: int = ATLAS_MIN_SEEDS) -> pd.DataFrame:
    """One row per (place, rate, γ): the class each seed's run gives (``seed_classes``), the cell's
    class ``cls`` — the class at least ``min_seeds`` of its seeds share, else UNDECIDED ("?") —, how
    many seeds back it (``agree``), the stable norm over standard SGD's (geometric means over the seeds
    that did not diverge), the expected budget Q, Table 1's T^a, and whether the cell is inside Table 1's
    boundary (Q ≤ T^a)."""
    if isinstance(min_seeds, bool) or not isinstance(min_seeds, (int, np.integer)) or min_seeds < 1:
        raise ValueError(f"classify_cells: min_seeds must be an integer >= 1, got {min_seeds!r}")
    base = table[table.panel == "baseline"].groupby("gamma").stable_grad_norm.apply(geometric_mean)
    rows = []
    for (place, fig, g), c in table[table.panel != "baseline"].groupby(["panel", "figure", "gamma"], sort=False):
        rate = float(fig.split("=")[1])
        classes = [_seed_class(bool(d), float(n), float(base[g])) for d, n in zip(c.diverged, c.stable_grad_norm)]
        counts = pd.Series(classes).value_counts()
        top, agree = str(counts.index[0]), int(counts.iloc[0])
        ok = c[~c.diverged]
        ratio = geometric_mean(ok.stable_grad_norm) / base[g] if len(ok) else np.nan
        a = budget_exponent(place)
        Q = float(expected_budget(rate, T, M, field))
        rows.append(dict(place=place, rate=rate, gamma=g, cls=top if agree >= min_seeds else UNDECIDED, agree=agree,
                         seed_classes=", ".join(classes), over_sgd=ratio, diverged_runs=int(c.diverged.sum()),
                         runs=len(c), expected_budget=Q, budget_bound=T**a, within_bound=Q <= T**a))
    return pd.DataFrame(rows).sort_values(["place", "rate", "gamma"], ignore_index=True)


def _undecided_text(cells: pd.DataFrame) -> str:
    n = int((cells.cls == UNDECIDED).sum())
    return (f"{n} of {len(cells)} cells undecided (fewer than {ATLAS_MIN_SEEDS} seeds share a class)" if n
            else f"every cell decided (at least {ATLAS_MIN_SEEDS} seeds share its class)")


TABLE1_C = 10.0  # Table 1 assumes γ = c/√T; the book's c (the budgets chapter's c_nonconvex)


def table1_gamma_max(T: int) -> float:
    """The largest step size in Table 1's regime γ = c/√T at horizon T (c = :data:`TABLE1_C`)."""
    return TABLE1_C / math.sqrt(T)


def boundary_verdict(claim, cells: pd.DataFrame, name: str, gamma_max: float | None = None) -> Verdict:
    """Table 1's boundary is sufficient: every decided cell with Q ≤ T^a recovers (unresolved if no
    decided cell is inside); undecided cells are counted and left out.  ``gamma_max``: only cells with
    γ ≤ gamma_max count (Table 1's step-size regime, :func:`table1_gamma_max`); None: every cell."""
    beyond = cells.iloc[:0] if gamma_max is None else cells[cells.gamma > gamma_max * (1 + 1e-12)]
    cells = cells[~cells.index.isin(beyond.index)]
    inside = cells[cells.within_bound]
    dec = inside[inside.cls != UNDECIDED]
    outside = cells[~cells.within_bound]
    regime = ("" if gamma_max is None else
              f"only cells with γ ≤ {gamma_max:.3g} count (Table 1 assumes γ = c/√T; c = {TABLE1_C:g} at this T); ")
    rule = (f"{regime}every decided cell with expected budget Q ≤ T^a (a from Table 1 for a biased perturbation) is recovered: "
            f"stable norm ≤ {RECOVERY_FACTOR:g}× standard SGD's and no diverged run, in at least {ATLAS_MIN_SEEDS} "
            f"seeds; a cell whose seeds do not agree that often is undecided and left out; holds if every decided "
            f"cell inside is recovered, fails if one is not; unresolved if no decided cell is inside the boundary")
    und = int((inside.cls == UNDECIDED).sum())
    if not len(dec):
        return Verdict(claim(name), "unresolved", rule=rule,
                       evidence=f"no decided cell of the grid has Q ≤ T^a ({len(inside)} inside, {und} undecided); "
                                + _undecided_text(cells) + ".")
    ok = (dec.cls == "recovered").all()
    counts = outside.cls.value_counts().to_dict()
    ev = (f"inside the boundary: {int((dec.cls == 'recovered').sum())} of {len(dec)} decided cells recovered, {und} "
          f"undecided (rates {', '.join(f'{r:g}' for r in sorted(inside.rate.unique()))}, T^a = "
          f"{inside.budget_bound.iloc[0]:.3g}); outside: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f"; {_undecided_text(cells)}.")
    if len(beyond):
        ev += (f" Not counted, outside Table 1's step-size regime (γ > {gamma_max:.3g}): {len(beyond)} cells, "
               + ", ".join(f"{v} {k}" for k, v in beyond.cls.value_counts().to_dict().items()) + ".")
    ev += (" Book's note: Table 1 covers perturbations of bounded size; exponent flips can make an entry huge or "
           "non-finite (see the exponent-flip verdict), so a cell that fails inside the boundary lies outside Table 1's "
           "hypotheses and is not a counterexample to the paper.")
    return Verdict(claim(name), "holds" if ok else "fails", rule=rule, evidence=ev,
                   key_number=float((dec.cls == "recovered").mean()),
                   key_label="fraction of decided cells inside the boundary that recover")


def _first_failure(c: pd.DataFrame) -> tuple[float, float]:
    """(lowest, highest) possible smallest rate whose cell is not recovered, at one place and γ: the
    highest is the smallest decided non-recovered rate (∞ if none), the lowest the smallest undecided
    rate below it (the first failure may hide there)."""
    c = c.sort_values("rate")
    bad = c[(c.cls != "recovered") & (c.cls != UNDECIDED)].rate
    hi = float(bad.min()) if len(bad) else np.inf
    und = c[(c.cls == UNDECIDED) & (c.rate < hi)].rate
    return (float(und.min()) if len(und) else hi), hi


def fragility_verdict(claim, cells: pd.DataFrame, name: str) -> Verdict:
    """The forward pass is the fragile one: at each γ the smallest rate that does not recover is lower
    forward than backward (never failing counts as above the grid); equal rates are ties; a γ at which an
    undecided cell could move either first failure across the other is undecided and left out."""
    gammas = sorted(cells.gamma.unique())
    flags, parts = [], []
    for g in gammas:
        at = cells[cells.gamma == g]
        f_lo, f_hi = _first_failure(at[at.place == "forward"])
        b_lo, b_hi = _first_failure(at[at.place == "backward"])
        if f_hi < b_lo:
            flag, word = True, "forward lower"
        elif b_hi < f_lo:
            flag, word = False, "backward lower"
        elif f_lo == f_hi == b_lo == b_hi:
            flag, word = "tie", "tie"
        else:
            flag, word = None, "undecided (an undecided cell lies below a first failure)"
        show = lambda lo, hi: f"{hi:g}" if lo == hi else f"{lo:g}–{hi:g}"  # noqa: E731
        parts.append(f"γ = {g:g}: forward {show(f_lo, f_hi)}, backward {show(b_lo, b_hi)} → {word}")
        flags.append(flag)
    decided = [f for f in flags if f in (True, False)]
    rule = ("at each γ, the smallest flip rate whose decided cell is not recovered (∞ if every rate recovers) is lower "
            "in the forward pass than in the backward pass; a γ where an undecided cell (fewer than "
            f"{ATLAS_MIN_SEEDS} seeds agree) lies below a first failure and could reorder them is undecided and left "
            "out; holds: every decided γ where they differ; partial: at least half; fails: fewer; unresolved: no "
            "decided γ where they differ")
    ev = "; ".join(parts) + f"; {sum(f is None for f in flags)} of {len(flags)} step sizes undecided; {_undecided_text(cells)}."
    outcome = "unresolved" if not decided else outcome_of_cases(decided)
    return Verdict(claim(name), outcome, rule=rule, evidence=ev)
