"""Section 6 as experiments: the configurations of the chapter 'budgets', as design tables
(one RunConfig per row in column ``config``, the labels as columns; :func:`fbsgd.studies.rates.schedules.run_design`).

* :func:`corollary1_design` — a perturbation at every iteration, of constant size or
  shrinking with T as (43)/(44) allow (:data:`DECAY`), or half as fast (Corollary 1);
* :func:`table1_design` — Q ≈ Tᵃ occurrences of an O(1) perturbation spread over the
  run, for every cell of Table 1 and every budget exponent a (Corollaries 2–4);
* :func:`spike_design` — the scenarios of Figure 2 (Section 6.3) at a constant step size.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fbsgd.studies.rates.schedules import budget_fields, decaying_size, design, horizon_configs, spread_fields
from fbsgd.engine.sweeps import RunConfig

__all__ = ["GEOS", "STANDARD", "DECAY", "SIZE_FIELD", "cases", "case_label", "corollary1_design", "table1_design",
           "spike_checkpoint", "superscript", "spike_scenarios", "spike_design", "SPIKE", "BIASED", "ZERO_BACKWARD", "ZERO_FORWARD"]

GEOS = ("nonconvex", "pl")
STANDARD = "standard SGD"
# geometry -> {(pass, mean): (exponent of T, power of ln T)} of the size that (43) / (44) allow:
# ‖δ‖ for zero-mean forward errors, ‖Eε‖ for biased backward errors
DECAY = {
    "nonconvex": {("forward", "zero"): (1 / 8, 0.0), ("backward", "nonzero"): (1 / 4, 0.0)},
    "pl": {("forward", "zero"): (1 / 4, 1 / 4), ("backward", "nonzero"): (1 / 2, 1 / 2)},
}
SIZE_FIELD = {"forward": "sigma_f", "backward": "sigma_b"}
SPIKE, BIASED = "A: one large spike", "B: persistent biased backward"
ZERO_BACKWARD, ZERO_FORWARD = "C: persistent zero-mean backward", "D: persistent zero-mean forward"


def cases(sigma_f: float, sigma_b: float, sigma_b_biased: float) -> dict:
    """(pass, mean) -> RunConfig fields of the O(1) perturbation of each cell of Table 1."""
    return {
        ("forward", "zero"): dict(perturbation="forward", sigma_f=sigma_f),
        ("forward", "nonzero"): dict(perturbation="forward", sigma_f=sigma_f, mean="nonzero"),
        ("backward", "zero"): dict(perturbation="backward", sigma_b=sigma_b),
        ("backward", "nonzero"): dict(perturbation="backward", sigma_b=sigma_b_biased, mean="nonzero"),
    }


def case_label(case) -> str:
    """"forward, zero-mean", "backward, biased", ..."""
    return f"{case[0]}, {'zero-mean' if case[1] == 'zero' else 'biased'}"


_SUPERSCRIPT = str.maketrans("0123456789.-", "⁰¹²³⁴⁵⁶⁷⁸⁹·⁻")


def superscript(x: float) -> str:
    """An exponent as Unicode superscripts: −0.125 → "⁻⁰·¹²⁵"."""
    return f"{x:g}".translate(_SUPERSCRIPT)


def _decaying(fields: dict, place: str, T_ref: int, p: float, lp: float):
    field = SIZE_FIELD[place]
    fixed = {k: v for k, v in fields.items() if k != field}
    return fixed, (lambda T: {field: decaying_size(fields[field], T, T_ref, p, lp)})


def corollary1_design(Ts, seeds: dict, c_used: dict, rho: dict, the_cases: dict, *, data_seed: int, mode: str) -> pd.DataFrame:
    """Per geometry: standard SGD; zero-mean forward, zero-mean backward and biased backward
    perturbations of constant size at every iteration; and the two :data:`DECAY` cases with the
    size shrinking as allowed or with half the exponents, equal to the O(1) size at T = min(Ts)."""
    parts = []
    for geo in GEOS:
        items = [(STANDARD, {}, None, "—")]
        for case in (("forward", "zero"), ("backward", "zero"), ("backward", "nonzero")):
            items.append((f"{case_label(case)}, constant", the_cases[case], None, "O(1)"))
        for case, (p, lp) in DECAY[geo].items():
            for label, f in (("as allowed", 1.0), ("half as fast", 0.5)):
                fixed, size = _decaying(the_cases[case], case[0], min(Ts), f * p, f * lp)
                rule = f"T{superscript(-f * p)}" + (f" ln{superscript(f * lp)} T" if lp else "")
                items.append((f"{case_label(case)}, {label}", fixed, size, rule))
        for name, kw, size, rule in items:
            cs = horizon_configs(geo, Ts, seeds[geo], c_used[geo], rho[geo], size=size, data_seed=data_seed, mode=mode, **kw)
            parts.append(design(cs, experiment="corollary1", geometry=geo, setting=name, size_rule=rule))
    return pd.concat(parts, ignore_index=True)


def table1_design(Ts, seeds: dict, c_used: dict, rho: dict, the_cases: dict, exponents, *, data_seed: int,
                  mode: str) -> pd.DataFrame:
    """Per geometry: standard SGD, and every (pass, mean) case at every budget exponent a with
    Q ≈ Tᵃ occurrences spread over the run (:func:`fbsgd.studies.rates.schedules.spread_fields`).  At a = 1
    (Q = T) the perturbation acts at every iteration, as in the constant-size runs of
    :func:`corollary1_design`, but with other random streams (its fields say budget = T): an
    independent replication, which keeps the verdicts of the two analyses independent."""
    parts = []
    for geo in GEOS:
        base = dict(data_seed=data_seed, mode=mode)
        cs = horizon_configs(geo, Ts, seeds[geo], c_used[geo], rho[geo], **base)
        parts.append(design(cs, experiment="table1", geometry=geo, setting=STANDARD, **{"pass": "none"}, mean="zero",
                            a=np.nan, Q=0))
        for (pas, mean), kw in the_cases.items():
            for a in exponents:
                for T in Ts:
                    fields = spread_fields(T, a)
                    cs = horizon_configs(geo, [T], seeds[geo], c_used[geo], rho[geo], **base, **kw, **fields)
                    parts.append(design(cs, experiment="table1", geometry=geo, setting=f"{pas}, {mean}",
                                        **{"pass": pas}, mean=mean, a=float(a), Q=int(fields["budget"])))
    return pd.concat(parts, ignore_index=True)


def spike_checkpoint(checkpoints, spike_at: float, T: int) -> int:
    """The iteration one before the first recorded checkpoint after spike_at·T, so that the
    spike's peak is on the recorded curve."""
    checkpoints = np.sort(np.asarray(checkpoints))
    return int(checkpoints[checkpoints > int(spike_at * T)][0] - 1)


def spike_scenarios(t_spike: int, T: int, *, spike_sigma: float, disturbance_sigma_b: float, sigma_b: float,
                    sigma_f: float) -> dict:
    """Scenario name -> RunConfig fields: standard SGD, A (one large zero-mean backward spike at
    t_spike), B (biased backward from t_spike on), C / D (zero-mean backward / forward from t_spike on)."""
    return {
        STANDARD: dict(),
        SPIKE: dict(perturbation="backward", sigma_b=spike_sigma, **budget_fields(1, T, start=t_spike)),
        BIASED: dict(perturbation="backward", sigma_b=disturbance_sigma_b, mean="nonzero", start=t_spike),
        ZERO_BACKWARD: dict(perturbation="backward", sigma_b=sigma_b, start=t_spike),
        ZERO_FORWARD: dict(perturbation="forward", sigma_f=sigma_f, start=t_spike),
    }


def spike_design(scenarios: dict, base: dict, gamma: float, seeds, t_spike: int) -> pd.DataFrame:
    """Every scenario at step size γ over ``base["T"]`` iterations; B, C and D also at γ/10 over
    ten times as many (the disturbance starting at the same γ·t, the gradient norm every 100th step)."""
    rows = []
    for name, kw in scenarios.items():
        runs = [(gamma, base["T"], kw)]
        if name in (BIASED, ZERO_BACKWARD, ZERO_FORWARD):
            runs.append((gamma / 10, 10 * base["T"], {**kw, "start": 10 * t_spike, "metric_every": 100}))
        for g, T_run, fields in runs:
            cs = [RunConfig(gamma=g, seed=s, **{**base, "T": T_run}, **fields) for s in seeds]
            rows.append(design(cs, experiment="spikes", geometry="nonconvex", scenario=name))
    return pd.concat(rows, ignore_index=True)
