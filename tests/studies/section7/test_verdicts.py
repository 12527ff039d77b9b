"""The Section 7 verdict rules on synthetic slope tables whose outcome is known by construction."""
import math

import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.section7 import verdicts as S
from fbsgd.book.verdicts import Claim


def claim(name, chapter="x"):
    return Claim(id=f"{chapter}.{name}", chapter=chapter, ref="test", source="paper", text=name)


def row(perturbation, slope, norm=1e-3, sigma_f=0.0, sigma_b=0.0, predicted=0.0, panel=None, interval=1, escapes=False):
    level = "standard SGD" if perturbation == "none" else (f"σ_f={sigma_f:g}" if perturbation == "forward" else f"σ_b={sigma_b:g}")
    return dict(perturbation=perturbation, panel=panel or {"none": "baseline", "forward": "left", "backward": "right"}[perturbation],
                level=level, slope=slope, slope_se=0.01, norm_at_gamma_min=norm, gamma_min=0.003, sigma_f=sigma_f,
                sigma_b=sigma_b, interval=interval, predicted_limit=predicted, escapes=escapes)


def test_geometric_mean_and_band():
    assert S.geometric_mean([1.0, 4.0]) == pytest.approx(2.0)
    assert math.isnan(S.geometric_mean([]))
    assert S.in_band(0.8) and S.in_band(1.25) and not S.in_band(0.79) and not S.in_band(1.26)
    assert list(S.in_band(pd.Series([0.5, 1.0, 2.0]))) == [False, True, False]


def _frequent(backward_slopes, forward):
    """forward: list of (sigma_f, slope, measured, predicted); standard SGD norm 1e-3."""
    rows = [row("none", 0.5)]
    rows += [row("backward", s, sigma_b=i + 1.0) for i, s in enumerate(backward_slopes)]
    rows += [row("forward", s, norm=m, sigma_f=sf, predicted=p) for sf, s, m, p in forward]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("slopes,outcome", [([0.5, 0.4], "holds"), ([0.5, 0.1], "partial"), ([0.0, 0.1], "fails")])
def test_backward_verdict(slopes, outcome):
    assert S.backward_verdict(claim, "b", _frequent(slopes, [(1.0, 0.0, 1e-2, 1e-2)]), "F").outcome == outcome


def test_forward_verdict_is_the_slope_rule_alone():
    # σ_f = 0.5: slope 0.11, above the plateau threshold 0.1, although it sits on a floor 10x above standard SGD:
    # the prediction is evidence, not a second way to pass, so it is not pinned; σ_f = 2 (slope 0.02) is
    t = _frequent([0.5], [(0.5, 0.11, 1.0e-2, 1.0e-2), (2.0, 0.02, 5e-2, 1.0e-1)])
    v = S.forward_verdict(claim, "f", t, "F")
    assert v.outcome == "partial" and v.threshold == "< 0.1 for every σ_f ≥ 0.5" and v.key_number == pytest.approx(0.11)
    assert "< 0.1" in v.rule and "not used to decide" in v.rule and " or " not in v.rule
    assert "σ_f = 0.5: slope 0.110 ± 0.010 → not pinned (measured / predicted floor 1.00" in v.evidence
    assert "σ_f = 2: slope 0.020 ± 0.010 → pinned" in v.evidence and "pinned: 1 of 2 cases (50%)" in v.evidence
    pinned = S.forward_pinned(t, 0.5).set_index("sigma_f")
    assert list(pinned.pinned) == [False, True] and list(pinned.on_floor) == [True, False]
    three = _frequent([0.5], [(0.5, 0.11, 1e-2, 1e-2), (1.0, 0.11, 2e-2, 2e-2), (2.0, 0.02, 5e-2, 1e-1)])
    assert S.forward_verdict(claim, "f", three, "F").outcome == "fails"  # pinned in 1 of 3: fewer than half


@pytest.mark.parametrize("forward,outcome", [
    ([(0.5, 0.3, 3e-3, 1e-2), (2.0, 0.0, 1e-1, 1e-1)], "partial"),  # 0.5: off its floor and not flat
    ([(0.5, 0.3, 1.0e-3, 1.0e-3), (2.0, 0.3, 1.5e-3, 1.5e-3)], "fails"),  # on their floors, but floors < 2x SGD
])
def test_forward_verdict_partial_and_fails(forward, outcome):
    assert S.forward_verdict(claim, "f", _frequent([0.5], forward), "F").outcome == outcome


def test_figure3_verdict():
    def runs(norm_hi, norm_lo, **kw):
        return pd.DataFrame([dict(gamma=1.0, stable_grad_norm=norm_hi, **kw), dict(gamma=0.1, stable_grad_norm=norm_lo, **kw)])
    left = runs(1.1, 1.0, sigma_f=2.0)
    right = runs(3.0, 1.0, sigma_b=2.0)
    v = S.figure3_verdict(claim, left, right, runs(3.0, 1.0), 0.1, 1.0)
    assert v.outcome == "holds" and v.key_number == pytest.approx(1.1 / 3.0)
    assert S.figure3_verdict(claim, runs(2.0, 1.0, sigma_f=2.0), right, right.iloc[:0], 0.1, 1.0).outcome == "fails"


def _biased(norms, slopes=None, escapes=None, base_slope=0.5):
    sb = [0.1, 0.25, 0.5, 1.0, 2.0][:len(norms)]
    slopes = slopes or [0.0] * len(norms)
    escapes = escapes or [False] * len(norms)
    rows = [row("none", base_slope, panel="main")]
    rows += [row("backward", s, norm=n, sigma_b=b, predicted=n, panel="main", escapes=e) for b, n, s, e in zip(sb, norms, slopes, escapes)]
    return pd.DataFrame(rows)


def test_nonzero_growth_says_where_it_saturates():
    t = _biased([0.01, 0.025, 0.049, 0.0743, 0.0769], escapes=[False, False, False, True, True])
    t["naive_plateau"] = t.sigma_b / 10
    v = S.nonzero_growth_verdict(claim, t)
    assert v.outcome == "partial"
    assert "rises up to σ_b = 1 and saturates beyond" in v.evidence and "+3%" in v.evidence
    assert "σ_b = 1, 2 the iterates escape" in v.evidence and "m‖ā‖ = 0.1, 0.2" in v.evidence
    assert "more than 5%" in v.rule
    assert S.nonzero_growth_verdict(claim, _biased([0.01, 0.02, 0.04])).outcome == "holds"
    assert S.nonzero_growth_verdict(claim, _biased([0.04, 0.04, 0.039])).outcome == "fails"


@pytest.mark.parametrize("slopes,outcome", [([0.0, 0.05], "holds"), ([0.0, 0.3], "partial"), ([0.3, 0.4], "fails")])
def test_nonzero_plateau(slopes, outcome):
    assert S.nonzero_plateau_verdict(claim, _biased([0.01, 0.02], slopes=slopes)).outcome == outcome


def test_nonzero_prediction_and_baseline():
    t = _biased([0.01, 0.02])
    assert S.nonzero_prediction_verdict(claim, t).outcome == "holds"
    t.loc[2, "predicted_limit"] = 0.01  # measured 0.02 = 2x the prediction
    assert S.nonzero_prediction_verdict(claim, t).outcome == "partial"
    t.loc[1, "predicted_limit"] = 0.1
    assert S.nonzero_prediction_verdict(claim, t).outcome == "fails"
    assert S.nonzero_baseline_verdict(claim, _biased([0.01])).outcome == "holds"
    assert S.nonzero_baseline_verdict(claim, _biased([0.01], base_slope=0.1)).outcome == "fails"


def test_nonzero_escape():
    t = _biased([0.01, 0.02], escapes=[False, True])
    norms = pd.DataFrame({0.1: [1.0, 10.0], 1.0: [1.0, 100.0]}, index=["σ_b=0.1", "σ_b=0.25"])
    assert S.nonzero_escape_verdict(claim, t, norms).outcome == "holds"
    assert S.nonzero_escape_verdict(claim, t, norms[[1.0, 0.1]]).outcome == "fails"
    assert S.nonzero_escape_verdict(claim, _biased([0.01, 0.02]), norms).outcome == "unresolved"


def _intervals(panels, base_norm=1.0, base_slope=0.5):
    """panels: {sigma_f: [(interval, slope, norm), ...]}."""
    rows = [row("none", base_slope, norm=base_norm)]
    for sf, pts in panels.items():
        rows += [row("forward", s, norm=n, sigma_f=sf, panel=f"sigma_f={sf:g}", interval=dt) for dt, s, n in pts]
    return pd.DataFrame(rows)


def _outcomes(t):
    return [v.outcome for v in S.interval_verdicts(claim, t, "F", "p", 1000)]


def test_interval_verdicts_all_hold():
    t = _intervals({1.0: [(1, 0.0, 10.0), (10, 0.5, 1.0), (100, 0.5, 1.0)],
                    2.0: [(1, 0.0, 30.0), (10, 0.3, 3.0), (100, 0.5, 1.1)]})
    assert _outcomes(t) == ["holds", "holds", "holds", "holds"]
    assert S.recovery_interval(t, "sigma_f=1") == 10 and S.recovery_interval(t, "sigma_f=2") == 100


def test_interval_verdicts_partial_fails_and_a_tie_is_unresolved():
    t = _intervals({1.0: [(1, 0.3, 10.0), (10, 0.5, 12.0), (100, 0.5, 1.0)],
                    2.0: [(1, 0.0, 30.0), (10, 0.3, 3.0), (100, 0.1, 1.0)]})
    # plateau in one panel; falls in one (σ_f = 1 rises 10 -> 12); the one panel with a floor (σ_f = 2) does not
    # recover (slope 0.1), the other had nothing to recover from; tie at Δt = 100
    assert _outcomes(t) == ["partial", "partial", "fails", "unresolved"]
    v = S.interval_verdicts(claim, t, "F", "p", 1000)
    assert v[1].key_number == pytest.approx(1.2) and v[1].threshold.startswith("≤ 1.05")
    assert "nothing to recover from" in v[2].evidence
    t2 = _intervals({1.0: [(1, 0.3, 10.0), (10, 0.5, 12.0), (100, 0.5, 20.0)],
                     2.0: [(1, 0.3, 3.0), (10, 0.5, 1.0), (100, 0.5, 1.0)]})
    # no plateau, so nothing to recover from (unresolved); σ_f = 2 falls: 3 -> 1 -> 1, σ_f = 1 rises; σ_f = 2 recovers
    # at 10, σ_f = 1 never
    assert _outcomes(t2) == ["fails", "partial", "unresolved", "fails"]
    v2 = S.interval_verdicts(claim, t2, "F", "p", 1000)
    assert v2[2].key_number == 0 and v2[3].key_number == 0.0  # recovery Δt, strongest / weakest: 10 / ∞
    nan = float("nan")
    assert S._recovery_ratio(10, nan) == math.inf and S._recovery_ratio(nan, 10) == 0.0
    assert S._recovery_ratio(10, 100) == 10.0 and math.isnan(S._recovery_ratio(nan, nan))


def test_stronger_outcome():
    nan = float("nan")
    assert S._stronger_outcome(10, 100) == "holds" and S._stronger_outcome(10, nan) == "holds"
    assert S._stronger_outcome(100, 10) == "fails" and S._stronger_outcome(nan, 10) == "fails"
    assert S._stronger_outcome(10, 10) == "unresolved" and S._stronger_outcome(nan, nan) == "unresolved"


def test_falls_with_interval():
    assert S.falls_with_interval([6.5e-4, 7.7e-5, 4.4e-5, 4.11e-5, 4.22e-5])  # 3 % wobble at the floor
    assert not S.falls_with_interval([6.5e-4, 7.7e-5, 9.0e-5])  # a 17 % rise


def test_recovery_interval():
    slopes = pd.DataFrame([
        dict(perturbation="none", panel="baseline", interval=1, norm_at_gamma_min=1.0),
        *[dict(perturbation="forward", panel="p", interval=dt, norm_at_gamma_min=v) for dt, v in ((1, 10.0), (10, 2.0), (100, 1.2), (1000, 1.0))],
    ])
    assert S.recovery_interval(slopes, "p") == 100
    assert math.isnan(S.recovery_interval(slopes.assign(norm_at_gamma_min=slopes.norm_at_gamma_min * [1, 9, 9, 9, 9]), "p"))


def test_trend():
    assert [S.trend(x) for x in (0.5, 0.0, 0.2, float("nan"))] == ["keeps decreasing", "levels off", "decreases slowly", "undetermined"]


def test_smallest_interval_uses_the_frequent_slope_rule():
    # Δt = 1 is the frequent case: slope 0.18 (not flat), although measured/predicted 1.07 on a floor 3.6x standard SGD's
    t = _intervals({1.0: [(1, 0.18, 3.6 * 1.07, ), (10, 0.5, 1.0), (100, 0.5, 1.0)],
                    2.0: [(1, 0.0, 30.0), (10, 0.3, 3.0), (100, 0.5, 1.1)]})
    t.loc[1, "predicted_limit"] = 3.6
    v = S.interval_verdicts(claim, t, "F", "p", 1000)[0]
    assert v.outcome == "partial" and v.key_number == pytest.approx(0.18)
    assert "σ_f = 1, Δt = 1: slope 0.18 → not pinned (measured / predicted floor 1.07" in v.evidence
    assert "σ_f = 2, Δt = 1: slope 0 → pinned" in v.evidence and "sigma_f=" not in v.evidence
    t.loc[1, "slope"] = 0.05  # flat: pinned, on or off its predicted floor
    t.loc[1, "predicted_limit"] = 1.5
    assert S.interval_verdicts(claim, t, "F", "p", 1000)[0].outcome == "holds"
    t.loc[1, "slope"] = 0.18
    shown = S.interval_display(t.assign(predicted_limit=t.predicted_limit.where(t.index != 1, 3.6)),
                               pd.Series([0, 1000, 100, 10, 1000, 100, 10]))
    assert shown.trend[1] == "decreases slowly, at its predicted floor" and shown.trend[2] == "keeps decreasing"


def test_frequent_display_matches_the_verdict_and_hides_zero_predictions():
    t = _frequent([0.5], [(0.5, 0.11, 1.0e-2, 1.0e-2), (2.0, 0.02, 5e-2, 1.0e-1), (0.2, 0.2, 1e-3, 1e-4)])
    d = S.frequent_display(t)
    by = dict(zip(d.level, d.trend))
    assert by["σ_f = 0.5"] == "decreases slowly, at its predicted floor"  # the verdict: not pinned (slope 0.11)
    assert by["σ_f = 2"] == "levels off" and by["σ_f = 0.2"] == "decreases slowly"  # 0.2 is not judged
    assert set(d.panel) == {"standard SGD", "top: forward", "bottom: backward"}
    assert d[d.panel != "top: forward"].predicted_limit.isna().all()  # zero predictions print as —


def test_estimate_uses_significant_figures():
    assert S.estimate(0.507, 0.004) == "0.507 ± 0.004"
    assert S.estimate(2.1e-4, 3e-5) == "2.1e-04 ± 3e-05"
    assert S.panel_name("sigma_f=1") == "σ_f = 1" and S.level_name("σ_f=1, Δt=10") == "σ_f = 1, Δt = 10"


def test_computed_sentences_of_the_section7_chapters():
    t = _frequent([0.5, 0.1], [(0.5, 0.11, 1.0e-2, 1.0e-2), (2.0, 0.02, 5e-2, 1.0e-1)])
    assert S.asymmetry_text(t, "Figure 4") == ("in Figure 4, 1 of 2 backward levels keep decreasing (slope > 0.25) and "
                                               "1 of 2 forward levels with σ_f ≥ 0.5 are pinned")
    assert S.decided_by_text(t, "Figure 4") == ("in Figure 4 the slope of σ_f = 0.5 is above 0.1 (0.11), so it is not "
                                                "pinned, although σ_f = 0.5 already sits at the predicted floor")
    t2 = _frequent([0.5], [(2.0, 0.02, 5e-2, 1.0e-1)])
    assert S.decided_by_text(t2, "Figure 5") == "in Figure 5 every level with σ_f ≥ 0.5 has a slope below 0.1"
    b = _biased([1e-3, 2e-3, 3e-3], escapes=[False, True, True])
    assert S.escape_text(b) == ("the biased field has a zero, and the iterates settle, for σ_b = 0.1; it has none, "
                                "and the iterates escape, for σ_b = 0.25, σ_b = 0.5")
    assert "for every σ_b of the grid" in S.escape_text(_biased([1e-3, 2e-3, 3e-3], escapes=[False] * 3))
    assert S.budget_text(200_000) == ("with T = 200,000 the non-convex budget Q_δ ≲ T^(1/2) of Corollary 2 is about 447 "
                                      "perturbed iterations, i.e. Δt ≈ T/Q_δ = √T ≈ 447")
