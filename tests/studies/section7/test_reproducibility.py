"""The reproducibility notes' comparisons and tolerance verdicts, on synthetic run tables."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.section7 import design as X
from fbsgd.studies.section7 import reproducibility as R
from fbsgd.book.verdicts import Ledger

claim = Ledger("reproducibility").claim
GAMMAS = [0.003, 0.01, 0.03]


def _fake_runs(configs, backward_slope=0.5):
    """A run table whose stable norms follow known laws: S = 1e-3 γ^slope without a floor, the predicted
    floor (constant in γ) for forward and biased runs."""
    rows = []
    for c in configs:
        if c.perturbation == "forward" or c.mean == "nonzero" and c.perturbation != "none":
            s = X.predicted_plateau(c)[0]
        else:
            s = 1e-3 * c.gamma ** (backward_slope if c.perturbation == "backward" else 0.5)
        rows.append({**c.fields(), "stable_grad_norm": s, "stable_iteration": 1000.0, "diverged": False,
                     "config_id": c.key(), "final_weight_norm": 1.0})
    return pd.DataFrame(rows)


def _grids():
    f4 = X.frequent_configs("r", "nonconvex", 0.001, [1.0, 2.0], [1.0], GAMMAS, [0], T=100, metric_every=10)
    f6 = X.nonzero_mean_configs("r", "l2", 0.1, [0.0, 0.5, 1.0], GAMMAS, [0], T=100, metric_every=10)
    return f4, f6


def test_identical_variants_change_nothing_and_a_changed_law_is_caught():
    f4, f6 = _grids()
    main = _fake_runs(f4 + f6).assign(variant="main")
    same = _fake_runs(f4).assign(variant="alt_w0")
    flat_backward = _fake_runs(f4, backward_slope=0.0).assign(variant="alt_mode")
    comparison = R.compare_variants(pd.concat([main, same, flat_backward], ignore_index=True))
    assert R.unchanged_verdict(claim, "alt_w0", comparison).outcome == "holds"
    v = R.unchanged_verdict(claim, "alt_mode", comparison)
    assert v.outcome == "fails" and "Figure 4, backward: keeps decreasing ✔ → ✘" in v.evidence and v.key_number == 1
    assert "both verdicts agree" in R.unchanged_verdict(claim, "alt_w0", comparison).evidence
    assert "alt_" not in v.evidence and R.change_text(comparison, "alt_w0") == "none of its 2 verdicts changes"
    summary = R.comparison_summary(comparison).set_index("variant").rename(index={n: k for k, n in R.VARIANT_NAMES.items()})
    assert summary.loc["alt_w0", "changed"] == 0 and summary.loc["alt_mode", "changed"] == 1


def test_fig6_l2_settles_on_its_prediction():
    _, f6 = _grids()
    runs = X.with_levels(_fake_runs(f6))
    slopes = X.slopes_with_predictions(runs)
    assert R.settles_verdict(claim, slopes, runs).outcome == "holds"
    off = slopes.copy()
    off.loc[off.sigma_b == 0.5, "norm_at_gamma_min"] *= 2
    assert R.settles_verdict(claim, off, runs).outcome == "partial"
    off.loc[off.sigma_b == 1.0, "norm_at_gamma_min"] *= 2
    assert R.settles_verdict(claim, off, runs).outcome == "fails"


def test_deviation_and_tolerance_verdicts():
    ref = pd.DataFrame(dict(stable_grad_norm=[1.0, 2.0], stable_iteration=[1000.0, 0.0]))
    close = ref.assign(stable_grad_norm=[1.001, 2.0], stable_iteration=[1005.0, 10.0])
    row = R.deviation(close, ref, "precision", metric_every=10)
    assert row["max_rel_stable_norm"] == pytest.approx(1e-3) and row["max_abs_stable_iteration"] == 10
    assert row["within_tolerance"]  # 5 <= 10 + 1% of 1000, 10 <= 10 + 0
    assert R.tolerance_verdict(claim, "tol_precision", row, "x", 10).outcome == "holds"
    far = R.deviation(ref.assign(stable_grad_norm=[1.01, 2.0]), ref, "precision", metric_every=10)  # 1% > 0.5%
    assert not far["within_tolerance"] and R.tolerance_verdict(claim, "tol_precision", far, "x", 10).outcome == "fails"
    late = R.deviation(ref.assign(stable_iteration=[1021.0, 0.0]), ref, "precision", metric_every=10)  # 21 > 10 + 10
    assert not late["within_tolerance"]


def test_metric_verdict_rejudges():
    f4, _ = _grids()
    a = _fake_runs(f4)
    v, row = R.metric_verdict(claim, a, a.copy(), metric_every=10)
    assert v.outcome == "holds" and row["max_rel_stable_norm"] == 0
    v, _ = R.metric_verdict(claim, a, _fake_runs(f4, backward_slope=0.0), metric_every=10)
    assert v.outcome == "fails" and "Figure 4, backward: keeps decreasing ✔ → ✘" in v.evidence


def _forward_slopes(pinned_1, pinned_2, levels=(1.0, 2.0)):
    rows = [dict(perturbation="none", panel="baseline", level="standard SGD", slope=0.5, slope_se=0.0,
                 norm_at_gamma_min=1e-3, predicted_limit=0.0, sigma_f=0.0, gamma_min=0.003)]
    for sf, pinned in zip(levels, (pinned_1, pinned_2)):
        rows.append(dict(perturbation="forward", panel="left", level=f"σ_f={sf:g}", slope=0.0 if pinned else 0.5,
                         slope_se=0.0, norm_at_gamma_min=1e-2 if pinned else 3e-3, predicted_limit=1e-2, sigma_f=sf,
                         gamma_min=0.003))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("p1,p2,outcome", [(True, True, "holds"), (False, True, "partial"), (False, False, "fails")])
def test_fig3_sigma_f_verdict_has_its_erratum(p1, p2, outcome):
    v = R.fig3_sigma_f_verdict(claim, _forward_slopes(p1, p2))
    assert v.outcome == outcome and "caption gives σ_f = 2" in v.erratum and "σ_f = 1" in v.erratum


def test_fig3_sigma_f_unresolved_without_both_levels():
    assert R.fig3_sigma_f_verdict(claim, _forward_slopes(True, True, levels=(0.5, 2.0))).outcome == "unresolved"


def test_variant_and_tolerance_configs():
    common = dict(T=100, mode="per_sample", ewma=0.99, metric_every=10, precision="float32", data_seed=0)
    cfg = R.variant_configs(common, [1.0, 2.0], [1.0], [0.0, 0.5], 0.001, 0.1, GAMMAS, [0, 1], "per_sample")
    per_point4, per_point6 = 1 + 2 + 1, 2
    n4, n6 = per_point4 * len(GAMMAS) * 2, per_point6 * len(GAMMAS) * 2
    assert [len(cfg[k]) for k in ("main", "alt_mode", "alt_w0", "alt_fig6_l2")] == [n4 + n6, n4 + n6, n4, n6]
    assert {c.mode for c in cfg["alt_mode"]} == {"shared"} and {c.w0_std for c in cfg["alt_w0"]} == {1.0}
    assert {c.regularizer for c in cfg["alt_fig6_l2"]} == {"l2"} and {c.rho for c in cfg["alt_fig6_l2"]} == {0.1}
    # the main runs are the figure chapters' configurations: same cache keys whatever the labels
    figure = X.frequent_configs("3-4", "nonconvex", 0.001, [1.0, 2.0], [1.0], GAMMAS, [0, 1], **common)
    assert {c.key() for c in cfg["main"] if c.mean == "zero"} == {c.key() for c in figure}
    ref = pd.DataFrame([c.fields() for c in cfg["alt_w0"][:3]])
    tol = R.tolerance_configs(ref)
    assert [c.metric_every for c in tol["metric_every"]] == [1] * 3
    assert [c.precision for c in tol["precision"]] == ["float64"] * 3 and [c.metric for c in tol["metric"]] == ["float64"] * 3
    assert [c.w0_std for c in tol["metric"]] == [1.0] * 3
