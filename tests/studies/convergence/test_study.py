"""Verdict rules of the convergence chapter on synthetic tables whose outcome is known."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.convergence import study as S
from fbsgd.studies.rates import statistics as RS
from fbsgd.book import verdicts as V

LEDGER = V.Ledger("convergence")


def _fit(exponent, se, lo, hi):
    return RS.PowerLaw(exponent, se, lo, hi, 1.0, 0.0, 4, 3, 2)


@pytest.mark.parametrize("fit, outcome", [(_fit(-0.497, 0.0003, -0.498, -0.496), "holds"),
                                          (_fit(-0.40, 0.05, -0.60, -0.20), "unresolved"),
                                          (_fit(-0.20, 0.01, -0.23, -0.17), "fails")])
def test_rate_verdict_band_then_interval(fit, outcome):
    v = S.rate_verdict(LEDGER.claim("remark1"), fit, -0.5, 0.05, "synthetic.")
    assert v.outcome == outcome and v.key_number == fit.exponent
    assert "0.05" in v.rule and "-0.550 … -0.450" in v.rule


def test_rate_verdict_shows_enough_digits():
    v = S.rate_verdict(LEDGER.claim("remark1"), _fit(-0.49712, 0.00031, -0.49845, -0.49579), -0.5, 0.05, "x.")
    assert "-0.49712 ± 0.00031" in v.evidence and "-0.49845 … -0.49579" in v.evidence
    assert "± 0.000 " not in v.evidence


def _rhs(measured, bound, setting=S.STANDARD, geometry="nonconvex"):
    n = len(measured)
    d = pd.DataFrame(dict(geometry=geometry, setting=setting, T=np.arange(1, n + 1) * 1000, measured=measured,
                          rhs_total=bound, rhs_optimization=bound, rhs_sampling=0.0, rhs_error_variance=0.0,
                          rhs_error_bias=0.0, step_condition=True, rhs_section4_total=np.asarray(bound) * 10,
                          error_mse=1.0, error_bias_sq=1.0, section4_mse=10.0, section4_bias_sq=100.0))
    d["rhs_over_measured"] = d.rhs_total / d.measured
    d["section4_over_measured"] = d.rhs_section4_total / d.measured
    return d


@pytest.mark.parametrize("measured, outcome", [([1, 1, 1], "holds"), ([1, 3, 1], "partial"), ([3, 3, 3], "fails")])
def test_bound_verdict_counts_the_pairs(measured, outcome):
    v = S.bound_verdict(LEDGER.claim("bound34"), _rhs(measured, [2.0, 2.0, 2.0]), "nonconvex")
    assert v.outcome == outcome
    assert v.evidence.startswith(f"{sum(m <= 2 for m in measured)} of 3")


@pytest.mark.parametrize("bound, outcome", [([6.0, 6.5, 7.0], "holds"), ([6.0, 12.0, 24.0], "fails")])
def test_tightness_is_the_spread_of_the_ratio(bound, outcome):
    v = S.tightness_verdict(LEDGER.claim("tight34"), _rhs([1.0, 1.0, 1.0], bound), "nonconvex")
    assert v.outcome == outcome and v.key_number == pytest.approx(bound[-1] / bound[0])
    assert v.claim.source == "book"


def test_section4_verdict_over_perturbed_settings_only():
    rhs = pd.concat([_rhs([1.0, 1.0], [2.0, 2.0]), _rhs([1.0, 50.0], [2.0, 2.0], setting="forward, σ_f = 4")])
    v = S.section4_verdict(LEDGER.claim("bound37"), rhs)  # Section 4 totals are 20: 1 ≤ 20, 50 > 20
    assert v.outcome == "partial"
    assert S.section4_verdict(LEDGER.claim("bound37"), _rhs([1.0], [2.0])).outcome == "unresolved"


def test_settings_leave_out_sizes_zero():
    assert list(S.settings(4.0, 0.0, "shared")) == [S.STANDARD, "forward, σ_f = 4"]


def _const(region=(2.0, 1.0)):
    return pd.DataFrame([dict(geometry=g, regularizer="r", rho=0.1, L=0.25, mu=mu, sigma2=1e-5, delta0=0.7, w_star_norm=1.0,
                              region_max_norm=rm, step_limit=4 / 3, schedule="γ = c/√T", c=10.0, largest_gamma=0.316)
                         for g, mu, rm in (("nonconvex", 0.0372, region[0]), ("pl", 0.2, region[1]))])


def test_constants_view_prints_symbols_and_three_figures():
    v = S.constants_view(_const())
    assert list(v.columns) == ["quantity", "non-convex", "PL"]
    row = v.set_index("quantity")
    assert row.loc["σ²", "non-convex"] == "1e\u221205" and row.loc["μ", "non-convex"] == "0.0372"
    assert row.loc["1/(3L_∇ℓ)", "PL"] == "1.33"


def test_region_note_says_whether_runs_leave_the_region():
    runs = pd.DataFrame(dict(geometry=["nonconvex", "nonconvex", "pl"], setting=["a", "b", "a"], T=[1000, 1000, 1000],
                             final_weight_norm=[3.01, 1.5, 0.8]))
    note = S.region_note(runs, _const((2.63, 0.9)))
    assert "non-convex problem the runs end outside" in note and "3.01 (a, T = 1,000)" in note and "2.63" in note
    assert "PL problem every run ends inside" in note


def test_exponent_comparison_and_transient_product():
    fits = pd.DataFrame(dict(geometry="pl", setting=[S.STANDARD, "backward"], exponent=[-0.95, -0.928],
                             ci_low=[-0.96, -1.21], ci_high=[-0.94, -0.647]))
    assert S.exponent_comparison(fits, "pl", "backward") == (
        "\u22120.928 (95 % interval \u22121.21 … \u22120.647), which contains the unperturbed \u22120.95")
    fits.loc[1, "ci_low"] = -0.93
    assert "does not contain" in S.exponent_comparison(fits, "pl", "backward")
    assert S.transient_product(_const(), 10.0, 1000) == pytest.approx(10 / np.sqrt(1000) * 1000 * 0.0372)


def _rhs_rows():
    rows = []
    for geo in S.GEOS:
        for name, scale in ((S.STANDARD, 1.0), ("forward, σ_f = 4", 10.0)):
            for T in (1000, 10000):
                opt = 6e-3 * 1000 / T
                rows.append(dict(geometry=geo, setting=name, T=T, measured=scale * opt / 6, rhs_optimization=opt,
                                 rhs_sampling=opt / 100, rhs_error_variance=0.0, rhs_error_bias=0.0,
                                 rhs_total=opt * 1.01, rhs_section4_total=opt * 1e6))
    d = pd.DataFrame(rows)
    return d.assign(rhs_over_measured=d.rhs_total / d.measured, section4_over_measured=d.rhs_section4_total / d.measured)


def test_computed_sentences_of_the_convergence_chapter():
    rhs = _rhs_rows()
    nc = S.standard_terms_text(rhs, "nonconvex")
    assert nc.startswith("the largest term of the bound is the optimization term 6Δ₀/(γT), 99.0% of it")
    assert nc.endswith("the measured average is 1 times Δ₀/(γT)")
    pl = S.standard_terms_text(rhs, "pl")
    assert "contraction term" in pl and "the measured gap is 17 times the sampling term" in pl
    assert "bound / measured is 6.06 over T" in pl
    assert S.perturbed_ratio_text(rhs) == ("with the exact moments, bound / measured is 0.606 over the perturbed settings "
                                           "and horizons; with the constants of Assumption 3, 600,000")
    const = pd.DataFrame([dict(geometry="nonconvex", largest_gamma=0.3, step_limit=1.2),
                          dict(geometry="pl", largest_gamma=0.9, step_limit=0.7)])
    text = S.step_condition_text(const)
    assert "γ = 0.9 > 1/(3L_∇ℓ) = 0.7 in the PL case" in text and text.endswith("violated where γ is larger")
    assert S.step_condition_text(const.iloc[:1]).endswith("so the condition holds")
    assert S.span_text([1000, 10**6]) == "T = 1,000 … 1,000,000 (three decades)"
    assert S.span_text([1000, 320_000]) == "T = 1,000 … 320,000 (2.5 decades)"
