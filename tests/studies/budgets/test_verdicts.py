"""Verdict rules of the budgets chapter on synthetic fits and tables whose outcome is known."""
import math

import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.budgets import verdicts as A
from fbsgd.studies.budgets import study as B
from fbsgd.studies.rates import schedules as D
from fbsgd.book import verdicts as V

LEDGER = V.Ledger("budgets")


def test_geometric_mean():
    assert A.geometric_mean([1.0, 100.0]) == pytest.approx(10.0)
    assert A.geometric_mean(np.array([[1.0, 4.0], [2.0, 8.0]]), axis=1) == pytest.approx([2.0, 4.0])


def _cor1(statuses):
    rows = []
    for geo in B.GEOS:
        rows.append(dict(geometry=geo, setting=B.STANDARD, size_rule="—", status="kept"))
        for (setting, _), st in zip(A.COROLLARY1_CHECKS.values(), statuses):
            rows.append(dict(geometry=geo, setting=setting, size_rule="r", status=st))
    d = pd.DataFrame(rows)
    return d.assign(exponent=-0.5, se=0.01, reference=-0.5, excess=0.0, excess_low=-0.1, excess_high=0.1)


@pytest.mark.parametrize("statuses, outcomes", [
    (["kept", "kept", "kept", "lost"], ["holds"] * 4),
    (["lost", "kept", "unresolved", "kept"], ["fails", "holds", "unresolved", "fails"]),
])
def test_corollary1_status_against_the_prediction(statuses, outcomes):
    vs = A.corollary1_verdicts(LEDGER, _cor1(statuses), 0.1)
    assert [v.outcome for v in vs[:4]] == outcomes
    assert "partial" not in {v.outcome for v in vs}  # a straddling interval is unresolved, never partial


def _table1(kept):
    """kept: (geometry, pass, mean) -> (kept_up_to, lost_from, holds)"""
    return pd.DataFrame([dict(geometry=g, **{"pass": p}, mean=m, paper_a=pa, kept_up_to=k, lost_from=lf, holds=h,
                              averaging_a=0.5, agreement="x")
                         for (g, p, m, pa), (k, lf, h) in kept.items()])


def _full(vals):
    keys = [(g, p, m) for g in B.GEOS for p in ("forward", "backward") for m in ("zero", "nonzero")]
    paper = {("nonconvex", "backward", "zero"): 1.0, ("pl", "backward", "zero"): 1.0}
    pa = {k: paper.get(k, 0.5 if k[0] == "nonconvex" else 0.0) for k in keys}
    return _table1({(*k, pa[k]): vals.get(k, (0.5, 1.0, True)) for k in keys})


def test_orderings_hold_fail_and_tie():
    t = _full({("nonconvex", "backward", "zero"): (1.0, math.nan, True), ("nonconvex", "forward", "zero"): (0.75, 1.0, True),
               ("pl", "backward", "zero"): (0.5, 1.0, True), ("pl", "forward", "zero"): (0.5, 1.0, True),
               ("pl", "forward", "nonzero"): (0.25, 0.5, True)})
    out = {v.claim.id.split(".")[1]: v.outcome for v in A.ordering_verdicts(LEDGER, t)}
    assert out == {"remark5_nonconvex": "holds", "corollary4_nonconvex": "holds",
                   "remark5_pl": "unresolved", "corollary4_pl": "fails"}  # a tie is unresolved, never partial


def test_table1_row_outcomes_and_conservative():
    t = _full({("nonconvex", "forward", "zero"): (0.75, 1.0, True), ("pl", "forward", "zero"): (0.0, 0.25, False),
               ("pl", "forward", "nonzero"): (math.nan, math.nan, None)})
    fits = pd.DataFrame([dict(geometry=g, setting=B.STANDARD, **{"pass": "none"}, mean="zero", a=np.nan, exponent=-0.5,
                              se=0.01, status="kept") for g in B.GEOS])
    vs = {v.claim.id.split(".")[1]: v for v in A.table1_verdicts(LEDGER, t, fits, {"nonconvex": -0.5, "pl": -0.9})}
    assert vs["table1_nonconvex_forward_zero"].outcome == "holds"
    assert vs["table1_pl_forward_zero"].outcome == "fails"
    assert vs["table1_pl_forward_nonzero"].outcome == "unresolved"
    c = A.conservative_verdict(LEDGER, t)
    # larger in 2 of the 6 rows (0.75 > 0.5, and PL backward biased 0.5 > 0), one row undefined: 3 of 6 would be
    # "in part", 2 of 6 "does not hold", so the verdict is unresolved
    assert c.outcome == "unresolved" and c.claim.source == "book" and c.key_number == 2
    t.loc[(t.geometry == "pl") & (t["pass"] == "forward") & (t["mean"] == "zero"), "kept_up_to"] = 0.25
    assert A.conservative_verdict(LEDGER, t).outcome == "partial"  # 3 of 6, whichever way the undefined row goes
    assert A.conservative_verdict(LEDGER, _full({})).outcome == "partial"  # PL rows 0.5 > 0, non-convex 0.5 = 0.5


def test_table1_key_counts_the_budgets_within_the_bound():
    t = _full({("pl", "forward", "zero"): (0.0, 0.25, False)})
    fits = pd.DataFrame([dict(geometry="pl", setting="x", **{"pass": "forward"}, mean="zero", a=a, exponent=-0.5, se=0.01,
                              status=st) for a, st in ((0.0, "kept"), (0.25, "lost"))]
                        + [dict(geometry=g, setting=B.STANDARD, **{"pass": "none"}, mean="zero", a=np.nan, exponent=-0.5,
                                se=0.01, status="kept") for g in B.GEOS])
    vs = {v.claim.id.split(".")[1]: v for v in A.table1_verdicts(LEDGER, t, fits, {"nonconvex": -0.5, "pl": -0.9})}
    v = vs["table1_pl_forward_zero"]  # the paper's a = 0: one budget within the bound, kept
    assert v.key_number == 0 and v.key_label.startswith("budgets with a ≤ 0 that lose the rate (of 1; kept: 1)")


@pytest.mark.parametrize("forward, backward, outcome", [
    ("lost", "kept", "fails"),  # the constant forward error loses the rate, the backward one keeps it: weaker on ε
    ("lost", "unresolved", "fails"),
    ("kept", "lost", "holds"),  # the sentence as printed
    ("lost", "lost", "unresolved"),  # no geometry decides
])
def test_section53_sentence_is_judged_on_the_constant_size_runs(forward, backward, outcome):
    statuses = {"forward_allowed": "kept", "biased_allowed": "kept", "backward_constant": backward, "forward_constant": forward}
    fits = _cor1([statuses[k] for k in A.COROLLARY1_CHECKS])
    fits.loc[fits.setting == "forward, zero-mean, constant", "excess"] = 0.3 if forward == "lost" else -0.01
    fits.loc[fits.setting == "backward, zero-mean, constant", "excess"] = 0.3 if backward == "lost" else 0.02
    v = A.section53_verdict(LEDGER, fits, _full({}))
    assert v.outcome == outcome and v.claim.source == "paper" and v.claim.section == "Section 5"
    assert v.key_number == pytest.approx({"fails": 0.28 if backward == "kept" else 0.28, "holds": -0.31,
                                          "unresolved": 0.0}[outcome])
    assert (v.erratum == A.SECTION53_ERRATUM) == (outcome == "fails") and "Table 1's zero-mean budgets" in v.evidence


def _traces(levels):
    """scenario -> (gamma, level, peak): flat traces with a peak right after t = 10."""
    rows = []
    for (name, g), (level, peak) in levels.items():
        for seed in (0, 1):
            for t in range(0, 100, 5):
                rows.append(dict(scenario=name, gamma=g, seed=seed, T=100, t=t,
                                 grad_norm=peak if t == 15 else level, loss_gap=(peak if t == 15 else level) ** 2))
    return pd.DataFrame(rows)


def test_spike_verdicts_recovery_and_shrinking():
    g = 0.01
    tr = _traces({(B.STANDARD, g): (1e-4, 1e-4), (B.SPIKE, g): (1.2e-4, 1.0), (B.BIASED, g): (0.02, 0.02),
                  (B.BIASED, g / 10): (0.02, 0.02), (B.ZERO_BACKWARD, g): (0.002, 0.002),
                  (B.ZERO_BACKWARD, g / 10): (0.0004, 0.0004), (B.ZERO_FORWARD, g): (0.03, 0.03),
                  (B.ZERO_FORWARD, g / 10): (0.003, 0.003)})
    table = A.spike_table(tr, g, t_spike=10)
    assert table[table.scenario == B.SPIKE].peak_grad_norm.iloc[0] == pytest.approx(1.0)
    out = {v.claim.id.split(".")[1]: v.outcome for v in A.spike_verdicts(LEDGER, table, g)}
    assert out == {"figure2_spike_recovers": "holds", "figure2_disturbance_off_course": "holds",
                   "figure2_spike_above_disturbance": "holds", "biased_level_no_shrink": "holds",
                   "zero_backward_shrinks": "holds", "zero_forward_no_shrink": "fails"}


def test_table1_design_spreads_Q_and_replicates_the_every_iteration_runs():
    Ts, seeds = [100, 400], {"nonconvex": [0], "pl": [0]}
    c, rho = {"nonconvex": 10.0, "pl": 30.0}, {"nonconvex": 0.001, "pl": 0.1}
    cases = B.cases(8.0, 2.0, 0.5)
    cor1 = B.corollary1_design(Ts, seeds, c, rho, cases, data_seed=0, mode="shared")
    t1 = B.table1_design(Ts, seeds, c, rho, cases, [0.0, 1.0], data_seed=0, mode="shared")
    keys = lambda d: {cfg.key() for cfg in d.config}  # noqa: E731
    every = t1[t1.a == 1.0]
    assert (every.Q == [cfg.T for cfg in every.config]).all()
    assert all(len(D.active_steps(cfg)) == cfg.T for cfg in every.config)
    assert not keys(cor1[cor1.setting.str.endswith("constant")]) & keys(every)  # other random streams
    once = t1[t1.a == 0.0]
    assert (once.Q == 1).all() and all(len(D.active_steps(cfg)) == 1 for cfg in once.config)
    assert (cor1.groupby(["geometry", "setting"]).size() == len(Ts)).all()
    assert keys(cor1[cor1.setting == B.STANDARD]) == keys(t1[t1.setting == B.STANDARD])  # standard SGD: run once


def test_run_design_labels_win_and_metric_follows_the_geometry(tmp_path):
    cfgs = D.horizon_configs("nonconvex", [40], [0], 10.0, 0.001)
    plan = D.stack(D.design(cfgs, geometry="nonconvex", mean="label"), D.design(cfgs, geometry="nonconvex", mean="again"))
    runs, result = D.run_design(plan, n_jobs=1, cache_dir=tmp_path, trace_points=4, progress=False)
    assert result.computed == 1 and list(runs["mean"]) == ["label", "again"]
    assert (runs.convergence_metric == runs.mean_sq_grad_norm).all()


def test_status_rule_is_a_complete_sentence():
    v = A.corollary1_verdicts(LEDGER, _cor1(["kept", "kept", "kept", "lost"]), 0.1)[0]
    assert v.rule.endswith("is unresolved if the interval straddles the tolerance")
    assert "a factor ln T" in v.rule and "1/ln T = 0.14 at T = 10³" in v.rule  # the tolerance's reason
    assert v.threshold.startswith("kept: the upper bound < 0.1") and "one-sided 95 % bounds" in v.key_label
    assert v.claim.text[0].isupper()  # claim titles start with a capital


def test_times_has_no_spurious_digits():
    assert A.times(290.4) == "290×"
    assert A.times(407844.0) == "4.1e+05×"


def _fits(rows):
    return pd.DataFrame(rows).assign(se=0.05)


def test_steep_kept_and_the_replication_sentence():
    cor1 = _fits([dict(geometry=g, setting=s, status=st, exponent=e, excess=e + 0.9)
                  for g in B.GEOS for s, st, e in ((B.STANDARD, "kept", -0.9), ("backward, zero-mean, constant",
                                                   "kept" if g == "nonconvex" else "unresolved", -0.66),
                                                  ("forward, zero-mean, as allowed", "kept", -0.87))])
    t1 = _fits([dict(geometry=g, setting="backward, zero", **{"pass": "backward"}, mean="zero", a=a, status=st,
                     exponent=e, excess=e + 0.9)
                for g in B.GEOS for a, st, e in ((0.5, "kept", -1.54), (1.0, "kept", -0.66))])
    steep = A.steep_kept(t1, 0.1)
    assert list(steep.a) == [0.5, 0.5]  # excess −0.64 < −0.3; −0.66 + 0.9 = +0.24 is not steep
    assert A.steep_kept(cor1, 0.1).empty
    text = A.replication_text(cor1, t1)
    assert "differ in the PL case" in text and "non-convex: Corollary 1 kept" in text
    assert "2 kept statuses rest" in A.steep_text(cor1, t1, {"nonconvex": -0.5, "pl": -0.9}, 0.1)
    assert "kept in the PL case (excess +0.030)" in A.forward_allowed_text(cor1)


# --- the closing section's computed sentences --------------------------------------------------------


def test_status_tally_and_the_corollary1_sentences():
    assert A.status_tally(["lost"] * 4) == "lost in all four cases"
    assert A.status_tally(["lost", "lost"]) == "lost in both cases"
    assert A.status_tally(["lost", "kept", "lost", "unresolved"]) == "lost in two of the four cases, kept in one, unresolved in one"
    cor1 = _cor1(["kept", "lost", "unresolved", "lost"])
    text = A.statuses_text(cor1, "forward, zero-mean, constant")
    assert text == "lost in the non-convex case (exponent −0.50) and lost in the PL case (−0.50)"
    half = cor1.assign(setting=cor1.setting.str.replace("as allowed", "half as fast"))
    assert A.half_as_fast_text(half).startswith("lost in two of the four cases, kept in two (")


def test_table1_sentences_count_rows_and_thresholds():
    t = _full({("nonconvex", "forward", "zero"): (0.75, 1.0, True), ("pl", "forward", "zero"): (math.nan, 1.0, False),
               ("pl", "backward", "nonzero"): (math.nan, math.nan, None)})
    within = A.table1_within_text(t)
    assert within.startswith("a budget within the paper's bound loses the rate in one of the eight cells (PL, forward, zero-mean)")
    assert "cannot be resolved (PL, backward, biased)" in within
    larger = A.table1_larger_text(t)
    assert "larger than the paper's in two (non-convex, forward, zero-mean: kept up to a = 0.75, paper a = 0.5;" in larger
    assert "not defined in two" in larger
    assert "non-convex: kept up to a = 0.5, first lost at a = 1" in A.zero_backward_text(t)
    assert A.forward_like_biased_text(t).startswith("different thresholds in both geometries")
    fits = pd.DataFrame([dict(geometry="nonconvex", **{"pass": "forward"}, mean="zero", a=a, status=s)
                         for a, s in ((0.5, "kept"), (0.75, "kept"), (0.875, "unresolved"), (1.0, "lost"))])
    assert A.above_threshold_text(t, fits) == "non-convex, forward, zero-mean: a = 0.875 unresolved"
    assert A.horizon_span_text([1000, 3162, 10000]) == "T = 1,000 … 10,000, 1 decade"


def test_spike_sentence_reads_the_levels():
    g = 0.01
    tab = pd.DataFrame([dict(scenario=n, gamma=gg, end_grad_norm=e, end_loss_gap=e ** 2, peak_grad_norm=p, peak_loss_gap=p)
                        for n, gg, e, p in ((B.STANDARD, g, 1e-3, 1e-3), (B.SPIKE, g, 1.2e-3, 0.5), (B.BIASED, g, 0.1, 0.1),
                                            (B.BIASED, g / 10, 0.1, math.nan), (B.ZERO_BACKWARD, g, 1e-2, 1e-2),
                                            (B.ZERO_BACKWARD, g / 10, 3e-3, math.nan))])
    text = A.spike_text(tab, g)
    assert "peaks at 500× standard SGD's level and ends at 1.2× it" in text
    assert "the level of B ends at 100× standard SGD's and does not shrink with the step size (ratio 1.00" in text
    assert "the level of C ends at 10× standard SGD's and shrinks with the step size (ratio 0.30" in text
    assert "D" not in text.split("(noise")[0].replace("SGD", "")  # D was not run: no sentence about it


def test_biased_settles_sentence():
    assert "still has a zero" in A.biased_settles_text(0.001, 0.5)


# --- the values the notebook glues ------------------------------------------------------------------


def test_setup_values_and_text_format_the_set_up():
    Ts, ref = [1000, 3162, 10000], {"nonconvex": -0.5, "pl": -0.8951}
    v = A.setup_values(Ts, ref, 4, 8, 0.001, 0.1, 2000, 8.0, 2.0, 0.5, 0.1, 0)
    assert (v["bu-span"], v["bu-M"], v["bu-rho-nc"], v["bu-sigma-f"], v["bu-tol"]) == \
        ("T = 1,000 … 10,000, 1 decade", "2,000", "0.001", "8", "0.1")
    assert v["bu-ref-pl"] == "−0.90" and v["bu-seeds"] == "8 per horizon against 4 in the non-convex case"
    assert "still has a zero" in v["bu-biased-settles"]
    text = A.setup_text(Ts, 4, 8, {"nonconvex": 10.0, "pl": 8.1766}, 0.3669, ref).splitlines()
    assert text == ["horizons T: 1,000, 3,162, 10,000", "seeds per horizon: 4 (non-convex), 8 (PL)",
                    "c = 10 (non-convex); c = 8.18 = 3/μ, μ = 0.367 (PL)",
                    "exponents of the rates on these horizons: −0.5 (T⁻¹ᐟ²), −0.895 (ln T/T)"]


def test_summary_values_are_the_sentences_of_their_functions_and_cover_the_prose():
    import re

    import nbformat

    cor1 = _cor1(["kept", "lost", "unresolved", "lost"])
    t1 = _fits([dict(geometry=g, setting="backward, zero", **{"pass": "backward"}, mean="zero", a=a, status=st,
                     exponent=e, excess=e + 0.9)
                for g in B.GEOS for a, st, e in ((0.5, "kept", -1.54), (1.0, "lost", -0.2))])
    table1 = _full({("nonconvex", "forward", "zero"): (0.75, 1.0, True)})
    g = 0.01
    spikes = pd.DataFrame([dict(scenario=n, gamma=g, end_grad_norm=e, end_loss_gap=e ** 2, peak_grad_norm=p, peak_loss_gap=p)
                           for n, e, p in ((B.STANDARD, 1e-3, 1e-3), (B.SPIKE, 1.2e-3, 0.5))])
    ref = {"nonconvex": -0.5, "pl": -0.9}
    v = A.summary_values(cor1, t1, table1, spikes, ref, 0.1, g, [1000, 320_000])
    assert v["bu-steep"] == A.steep_text(cor1, t1, ref, 0.1) and v["bu-t1-larger"] == A.table1_larger_text(table1)
    assert v["bu-c-forward"] == A.statuses_text(cor1, "forward, zero-mean, constant")
    assert v["bu-spikes"] == A.spike_text(spikes, g) and v["bu-T-max"] == "320,000"
    setup = A.setup_values([1000, 10000], ref, 4, 8, 0.001, 0.1, 2000, 8.0, 2.0, 0.5, 0.1, 0)
    nb = nbformat.read("chapters/budgets.ipynb", as_version=4)
    used = {k for c in nb.cells if c.cell_type == "markdown" for k in re.findall(r"`(bu-[\w-]+)", c.source)}
    assert used and used <= set(v) | set(setup)  # every number the prose glues is computed by one of the two


def test_raw_curves_and_run_count_text():
    budget = pd.DataFrame({"pass": ["none", "forward", "forward", "backward"], "mean": ["zero", "zero", "nonzero", "zero"],
                           "a": [np.nan, 0.5, 0.5, 1.0], "config_id": ["s", "f", "n", "b"], "diverged": [False, True, False, False]})
    raw, labels = A.raw_curves(budget, [0.5, 1.0])
    assert list(raw.label) == ["standard SGD", "a = 0.5"] and labels == ["standard SGD", "a = 0.5", "a = 1"]

    class R:  # the counts of a sweep result
        def __init__(self, computed, cached, wall):
            self.computed, self.from_cache, self.wall_s = computed, cached, wall
    text = A.run_count_text(budget, budget.iloc[:2], [R(3, 1, 10.0), R(2, 0, 2.5)])
    assert text == "6 rows in the run tables, 6 distinct runs:\n5 computed, 1 from the cache, 12.5 s; diverged: 2"
