"""Real mechanisms as perturbations: what rounding, compression and bit flips do to δ and ε
on the messages the Section 7 chain sends, and which of the paper's classes each falls in
{cite}`kong2026perturbed`.

The logistic chain of eq. (54) sends one number per sample each way: the forward message
z = f₁(w) = −y hᵀw (where δ enters, eq. 5a) and the backward message ∂f₂/∂f₁ = σ(z̃) (where
ε enters, eq. 5b).  :func:`training_messages` records both along a clean SGD run;
:func:`draw_deltas` applies a mechanism to them repeatedly; :func:`moment_statistics` turns
the draws into the quantities the paper's assumptions are about:

* ``mean``, ``mean_z``         E δ over inputs and draws, and its z-score (biased on average?)
* ``conditional_bias``         ‖E[δ | x]‖² / E‖δ‖², estimated without the ``1/S`` bias of the
                               plug-in (a U-statistic over the S draws at each input): 0 when
                               δ is zero-mean given the input, 1 when δ is a function of x
* ``second_moment``, ``relative_size`` = ‖δ‖/‖x‖, ``correlation`` with x
* ``max_relative`` = max |δ_i|/|x_i|, ``max_over_range`` = max |δ| / max |x|, ``nonfinite_fraction``

:func:`classify` places a row in the paper's classes.  The γ → 0 predictions of the chapter do not use
these measured moments: they come from each mechanism's own conditional law given its input
(:func:`fbsgd.studies.real_mechanisms.study.attach_predictions`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import expit

from fbsgd import perturbations as pert
from fbsgd import rng
from fbsgd.optimizers import SGD, AddNoise, PassGradient, train
from fbsgd.book.verdicts import Verdict, outcome_of_cases

__all__ = ["MEAN_Z", "CONDITIONAL_BIAS_MAX", "MIN_HITS", "training_messages", "draw_deltas", "moment_statistics",
           "classify", "moment_table", "mechanism_label", "zero_mean_verdict",
           "biased_verdict", "bounded_verdict", "flip_range_text"]

MEAN_Z = 3.0  # |mean| > MEAN_Z standard errors: biased on average over inputs
CONDITIONAL_BIAS_MAX = 0.05  # ‖E[δ|x]‖²/E‖δ‖² below this: zero-mean given the input
MIN_HITS = 100  # fewer non-zero draws than this: too rare to tell whether δ is zero-mean


def mechanism_label(p: pert.Perturbation) -> str:
    """A short readable name: "float8_e4m3fn nearest", "Top-K k=10", "bit flip exponent 1e-05"
    (the perturbation's own ``label``)."""
    return p.label


def training_messages(problem, gamma: float, T: int, n_checkpoints: int, noise_std: float = 1e-3, seed: int = 0):
    """The messages of the logistic chain along clean SGD (w₀ = 0, w ← w − γ(∇f(w) + ξ), eq. 5d, run by
    the one training loop, :func:`fbsgd.optimizers.train`, with ξ from the stream of ``seed``): at
    ``n_checkpoints`` iterations evenly spaced over the second half of the run, the forward message
    z = −a w (a_l = y_l h_l) and the backward message σ(z).  Returns (steps, z, s), z and s of shape
    (n_checkpoints, M, 1) — the (batch, features) layout of the passes."""
    a = problem.signed_features
    keep = sorted(set(np.linspace(T // 2, T - 1, n_checkpoints).astype(int).tolist()))
    weights = {0: np.zeros(problem.d)} if 0 in keep else {}

    def record(t, w, g, step):  # after the update of iteration t, w is w_{t+1}
        if t + 1 in keep:
            weights[t + 1] = w.copy()

    noise = AddNoise(SGD(gamma), noise_std, rng.derive_key("fbsgd.mechanisms.messages.xi", int(seed)))
    train(PassGradient(problem.net), np.zeros(problem.d), noise, T, problem.data,
          regularizer_grad=lambda w: problem.rho * problem.regularizer.gradient(w), callback=record)
    z = np.array([-a @ weights[t] for t in keep])[:, :, None]
    return np.array(keep), z, expit(z)


def draw_deltas(p: pert.Perturbation, x: np.ndarray, draws: int, seed: int = 0) -> np.ndarray:
    """δ = P(x) − x for ``draws`` successive calls of ``p`` at each input x[k]: shape (K, draws, n)."""
    x = np.asarray(x, dtype=float)
    out = np.empty((x.shape[0], draws, x[0].size))
    for k in range(x.shape[0]):
        state = p.init(seed * 1_000_003 + k)
        for s in range(draws):
            y, state = p(x[k], state)
            out[k, s] = (np.asarray(y, dtype=float) - x[k]).reshape(-1)
    return out


def moment_statistics(d: np.ndarray, x: np.ndarray) -> dict:
    """The statistics of the module docstring from draws ``d`` (K, S, n) at inputs ``x`` (K, n).

    Non-finite draws enter only ``nonfinite_fraction`` and make ``max_relative`` and
    ``max_over_range`` infinite; the moments use the finite draws."""
    d = np.asarray(d, dtype=float)
    K, S, n = d.shape
    x = np.asarray(x, dtype=float).reshape(K, 1, n)
    xb = np.broadcast_to(x, d.shape)
    fin = np.isfinite(d)
    df, xf = d[fin], xb[fin]
    nonfinite = float(1 - fin.mean())
    mean = float(df.mean())
    sd = float(df.std(ddof=1)) if df.size > 1 else 0.0
    se = sd / math.sqrt(df.size) if df.size else float("nan")
    m2 = float(np.mean(df**2))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = float(np.corrcoef(df, xf)[0, 1]) if sd > 0 and xf.std() > 0 else 0.0
        rel = np.abs(d) / np.abs(xb)
    rel = rel[(xb != 0) & ~np.isnan(rel)]
    if S >= 2 and np.all(fin) and m2 > 0:
        cm = d.mean(axis=1)  # estimate of E[δ | x] at each input
        cv = d.var(axis=1, ddof=1)
        cond = float(np.mean(cm**2 - cv / S) / m2)  # unbiased for ‖E[δ|x]‖² / E‖δ‖²
    else:
        cond = float("nan") if m2 > 0 or nonfinite else 0.0
    return dict(mean=mean, mean_se=se, mean_z=(mean / se if se > 0 else (0.0 if mean == 0 else math.inf)),
                second_moment=m2, variance=m2 - mean**2,
                relative_size=float(math.sqrt(np.sum(df**2) / np.sum(xf**2))) if np.sum(xf**2) > 0 else float("nan"),
                correlation=corr, conditional_bias=cond,
                max_relative=float(rel.max()) if rel.size else 0.0,
                max_over_range=(math.inf if nonfinite else float(np.abs(df).max() / np.abs(xb).max())),
                nonfinite_fraction=nonfinite, hits=int(np.count_nonzero(d)), draws=int(d.size))


def classify(stats: dict) -> dict:
    """The paper's classes for one row of :func:`moment_statistics`.

    ``zero_mean``: "too rare to tell" (fewer than MIN_HITS non-zero draws), "given the input" (|mean_z| ≤ MEAN_Z and conditional_bias < CONDITIONAL_BIAS_MAX:
    E[δ | x] = 0, what the zero-mean results assume), "on average only" (|mean_z| ≤ MEAN_Z but
    δ depends deterministically on x), or "biased" (|mean_z| > MEAN_Z);
    ``bounded``: every δ finite with |δ| ≤ max |x| (no spike beyond the message's own range);
    ``relative``: |δ_i| ≤ |x_i| for every entry (the error shrinks with the signal)."""
    biased = not abs(stats["mean_z"]) <= MEAN_Z
    cond = stats["conditional_bias"]
    given = (not biased) and np.isfinite(cond) and cond < CONDITIONAL_BIAS_MAX
    zero_mean = "biased" if biased else ("given the input" if given else "on average only")
    if stats["hits"] < MIN_HITS:
        zero_mean = "too rare to tell"
    bounded = bool(stats["nonfinite_fraction"] == 0 and stats["max_over_range"] <= 1.0)
    relative = bool(stats["nonfinite_fraction"] == 0 and stats["max_relative"] <= 1.0)
    return dict(zero_mean=zero_mean, bounded=bounded, relative=relative)


def moment_table(mechanisms, messages: dict, draws: int, seed: int = 0) -> pd.DataFrame:
    """One row per (mechanism, message): :func:`moment_statistics` and :func:`classify`.

    ``messages``: name ("forward z", "backward σ(z)") → inputs of shape (K, batch, features)."""
    rows = []
    for p in mechanisms:
        for j, (name, x) in enumerate(messages.items()):
            d = draw_deltas(p, x, draws, seed + 7919 * j)
            st = moment_statistics(d, x.reshape(x.shape[0], -1))
            rows.append(dict(mechanism=mechanism_label(p), kind=type(p).__name__, message=name, **st, **classify(st),
                             declared_zero_mean=p.law.zero_mean))
    return pd.DataFrame(rows)


# -- verdicts on the classes ----------------------------------------------------------------------


def _rows(table, kinds, text):
    sub = table[table.kind.isin(kinds)]
    return sub, "; ".join(f"{r.mechanism} on {r.message}: {text(r)}" for r in sub.itertuples())


def _num(x, spec: str = ".3g", missing: str = "—") -> str:
    """``x`` by ``spec`` with a true minus sign; ``missing`` for NaN/None/inf."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return missing
    return format(x, spec).replace("-", "−") if np.isfinite(x) else missing


def zero_mean_verdict(claim, table: pd.DataFrame, name: str, kinds, mode: str | None = None) -> Verdict:
    """The mechanisms of ``kinds`` (and rounding ``mode``) are zero-mean given the input on every
    message: holds / partial / fails by the cases of :func:`classify`."""
    sub = table[table.kind.isin(kinds)]
    if mode is not None:
        sub = sub[sub.mechanism.str.endswith(mode)]
    flags = sub.zero_mean == "given the input"
    ev = "; ".join(f"{r.mechanism} on {r.message}: conditional bias {_num(r.conditional_bias)}, mean / s.e. "
                   f"{_num(r.mean_z, '.2g')} → {r.zero_mean}" for r in sub.itertuples())
    return Verdict(claim(name), outcome_of_cases(flags),
                   rule=f"E[δ | x] = 0: |mean / s.e. of δ| ≤ {MEAN_Z:g} and ‖E[δ|x]‖²/E‖δ‖² < {CONDITIONAL_BIAS_MAX:g} on every "
                        f"message (holds: all; partial: some; fails: none)",
                   evidence=ev + ".", key_number=float(sub.conditional_bias.max()), key_label="largest conditional bias")


def biased_verdict(claim, table: pd.DataFrame, name: str, kinds) -> Verdict:
    """The mechanisms of ``kinds`` are not zero-mean given the input (conditional bias ≥ the threshold, or biased)."""
    sub = table[table.kind.isin(kinds)]
    flags = sub.zero_mean != "given the input"
    ev = "; ".join(f"{r.mechanism} on {r.message}: conditional bias {_num(r.conditional_bias)}, mean / s.e. "
                   f"{_num(r.mean_z, '.2g')}"
                   for r in sub.itertuples())
    return Verdict(claim(name), outcome_of_cases(flags),
                   rule=f"not zero-mean given the input: |mean / s.e. of δ| > {MEAN_Z:g} or ‖E[δ|x]‖²/E‖δ‖² ≥ {CONDITIONAL_BIAS_MAX:g} "
                        f"on every message (holds: all; partial: some; fails: none)",
                   evidence=ev + ".", key_number=float(sub.conditional_bias.min()), key_label="smallest conditional bias")


def bounded_verdict(claim, table: pd.DataFrame, name: str, kinds, field: str | None = None) -> Verdict:
    """The mechanisms of ``kinds`` (bit flips of ``field``) are bounded by the message's range on every message."""
    sub = table[table.kind.isin(kinds)]
    if field is not None:
        sub = sub[sub.mechanism.str.contains(f" {field} ")]
    ev = "; ".join(f"{r.mechanism} on {r.message}: max|δ|/max|x| = "
                   f"{_num(r.max_over_range, missing='∞ (non-finite entries)')}, "
                   f"non-finite fraction {_num(r.nonfinite_fraction, '.2g')}" for r in sub.itertuples())
    return Verdict(claim(name), outcome_of_cases(sub.bounded),
                   rule="every δ finite and max|δ| ≤ max|x| on every message (holds: all; partial: some; fails: none)",
                   evidence=ev + ".", key_number=(float(sub.max_over_range.max()) if np.isfinite(sub.max_over_range.max()) else None),
                   key_label=("largest max|δ|/max|x|" if np.isfinite(sub.max_over_range.max()) else
                              "largest max|δ|/max|x|: ∞ (non-finite entries)"))


def flip_range_text(table: pd.DataFrame, field: str = "exponent") -> str:
    """What the moment table says about the size of ``field`` bit flips, and what follows for the
    atlas (Table 1 assumes perturbations of bounded size)."""
    sub = table[(table.kind == "BitFlip") & table.mechanism.str.contains(f" {field} ")]
    if not len(sub):
        return f"no {field} flips were measured"
    if bool(sub.bounded.all()):
        return (f"{field} flips that stay finite and within the message's own range, so the atlas tests Table 1's "
                f"boundary within its hypotheses")
    worst = sub.max_over_range.replace([np.inf, -np.inf], np.nan).max()
    nonfinite = bool((sub.nonfinite_fraction > 0).any()) or not np.isfinite(sub.max_over_range).all()
    size = " and ".join(([f"entries up to {_num(worst)} times the message's range"] if np.isfinite(worst) else [])
                        + (["non-finite entries"] if nonfinite else []))
    return (f"{field} flips that are not bounded ({size}): the atlas therefore probes Table 1's boundary beyond its "
            f"hypotheses, and a cell that fails inside it is not a counterexample to the paper (the book's note)")
