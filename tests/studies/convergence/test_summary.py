"""What the convergence chapter glues, prints and shows, built by convergence_study, on small
synthetic tables whose answer is known."""
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.convergence import study as S
from fbsgd.studies.rates import statistics as RS
from fbsgd.book import verdicts as V

TS = [1000, 3200, 10000]
FORWARD, BACKWARD = "forward, σ_f = 4", "backward, σ_b = 2"


def _fit(exponent, se=0.001, prefactor=1.0):
    return RS.PowerLaw(exponent, se, exponent - 2 * se, exponent + 2 * se, prefactor, 0.0, 3, 4, 3)


def _fits(settings=(S.STANDARD, FORWARD, BACKWARD), exponents=None, ref_pl=-0.9):
    rows = []
    for geo in S.GEOS:
        for i, name in enumerate(settings):
            e = (exponents or {}).get((geo, name), -0.5 if geo == "nonconvex" else -0.9 + 0.01 * i)
            f = _fit(e)
            rows.append(dict(geometry=geo, setting=name, exponent=e, se=f.se, ci_low=f.ci_low, ci_high=f.ci_high,
                             reference=-0.5 if geo == "nonconvex" else ref_pl, fit=f))
    return pd.DataFrame(rows)


def _rhs(settings=(S.STANDARD, FORWARD)):
    rows = []
    for geo in S.GEOS:
        for name, scale in zip(settings, (1.0, 10.0, 5.0)):
            for T in TS:
                opt = 6e-3 * 1000 / T
                rows.append(dict(geometry=geo, setting=name, T=T, measured=scale * opt / 6, measured_min=scale * opt / 7,
                                 measured_max=scale * opt / 5, rhs_optimization=opt, rhs_sampling=opt / 100,
                                 rhs_error_variance=0.0, rhs_error_bias=0.0, rhs_total=opt * 1.01,
                                 rhs_section4_total=opt * 1e6))
    d = pd.DataFrame(rows)
    return d.assign(rhs_over_measured=d.rhs_total / d.measured, section4_over_measured=d.rhs_section4_total / d.measured)


def _const():
    return pd.DataFrame([dict(geometry="nonconvex", regularizer="r", rho=0.001, L=0.25, mu=0.01, sigma2=2.5e-3,
                              delta0=0.7, w_star_norm=1.0, region_max_norm=2.5, step_limit=1.2, schedule="γ = c/√T",
                              c=10.0, largest_gamma=0.3),
                         dict(geometry="pl", regularizer="r2", rho=0.1, L=0.3, mu=0.2, sigma2=2.5e-3, delta0=0.5,
                              w_star_norm=0.5, region_max_norm=0.8, step_limit=0.7, schedule="γ = c·ln T/T", c=15.0,
                              largest_gamma=0.9)])


def _setups():
    return {"nonconvex": SimpleNamespace(problem=SimpleNamespace(d=10, M=1000), noise_std=0.05)}


def test_span_short():
    assert S.span_short(TS) == "T = 1,000…10,000"
    assert S.span_short([5000, 200]) == "T = 200…5,000"


def test_remark_verdicts_quote_their_metric_span_and_target():
    ledger = V.Ledger("convergence")
    v1 = S.remark1_verdict(ledger.claim("remark1"), _fits(), TS, 0.05)
    assert v1.outcome == "holds" and v1.key_number == -0.5 and v1.claim.id == "convergence.remark1"
    assert v1.evidence.endswith("metric (1/T)Σ‖∇ℓ(w_t)‖² over T = 1,000…10,000; textbook exponent −0.5.")
    assert "-0.550 … -0.450" in v1.rule
    v2 = S.remark2_verdict(ledger.claim("remark2"), _fits(ref_pl=-0.8), TS, 0.05, 10 / 3)
    assert v2.outcome == "fails"  # standard SGD's −0.9 against the reference −0.8 ± 0.05, tight interval
    assert "-0.850 … -0.750" in v2.rule
    assert v2.evidence.endswith("metric ℓ(w_T) − ℓ* over T = 1,000…10,000; ln T/T has the exponent -0.800 on these "
                                "horizons (−1 up to the logarithm); c = 3.33.")
    assert S.remark2_verdict(ledger.claim("remark2"), _fits(ref_pl=-0.9), TS, 0.05, 1.0).outcome == "holds"


def test_run_summary_text():
    runs = pd.DataFrame(dict(diverged=[False, True, False], final_weight_norm=[1.234, 2.731, 0.5]))
    result = SimpleNamespace(computed=2, from_cache=1, wall_s=2.345)
    assert S.run_summary_text(runs, result, TS, _const()) == (
        "3 runs at T = 1,000, 3,200, 10,000:\n2 computed, 1 from the cache, 2.3 s;\n"
        "diverged: 1; largest ‖w_T‖: 2.73 (region: 2.50)")


def test_constants_shown_is_the_view_with_its_caption():
    styled = S.constants_shown(_const())
    assert list(styled.data.columns) == ["quantity", "non-convex", "PL"]
    assert styled.data.equals(S.constants_view(_const()))
    assert "Constants of the two problems (one column per geometry)" in styled.to_html()


def test_bounds_ends_view_keeps_the_shortest_and_longest_horizon():
    rhs = _rhs().assign(section4_over_measured=1.23456, rhs_over_measured=1.23456)
    view = S.bounds_ends_view(rhs, TS)
    assert sorted(set(view.data["T"])) == [1000, 10000] and len(view.data) == 8
    assert list(view.data.columns) == ["geometry", "setting", "T", "measured", "bound", "bound / measured",
                                       "bound (37) / measured"]
    html = view.to_html()
    assert "Bound against measurement at T = 1,000 and 10,000 (12 rows, with every term in the CSV)" in html
    assert html.count(">1.2<") == 8 and html.count(">1.23<") == 8  # bound (37) / measured to 2 figures, the rest to 3


def test_exponents_view_digits():
    table = _fits().drop(columns="fit")
    table.loc[0, "exponent"], table.loc[0, "se"] = -0.4987654, 0.0123456
    view = S.exponents_view(table)
    assert list(view.data.columns) == ["geometry", "setting", "reference", "exponent", "s.e.", "95 % low", "95 % high"]
    html = view.to_html()
    assert "0.49877" in html and "0.012" in html and "0.0123" not in html


def test_rates_figure_draws_measured_bound_and_fit_per_setting():
    settings = [S.STANDARD, FORWARD]
    fig = S.rates_figure(_rhs(settings), _fits(settings), TS, settings)
    axes = fig.axes
    assert len(axes) == 2
    for ax in axes:
        assert len(ax.lines) == 3 * len(settings) and len(ax.collections) == len(settings)  # + one band each
    first = axes[0].lines
    assert first[0].get_color() == "k" and first[0].get_marker() == "o" and first[0].get_markersize() == 7
    assert first[3].get_color() == "C0" and first[3].get_markersize() == 5.5
    assert first[1].get_linestyle() == "--"
    np.testing.assert_allclose(first[2].get_ydata()[[0, -1]], [1000 ** -0.5, 10000 ** -0.5])  # prefactor 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "standard SGD: measured", "standard SGD: bound (34) / (38)", "forward, $\\sigma_f$ = 4: measured",
        "forward, $\\sigma_f$ = 4: bound (34) / (38)"]
    assert "Thm 3" in axes[0].get_title() and "Thm 5" in axes[1].get_title()
    plt.close(fig)


def test_setup_values():
    v = S.setup_values(_const(), _setups(), TS, 10.0)
    assert v == {"cv-transient": "3.16",  # γTμ at T_min: 10/√1000 · 1000 · 0.01
                 "cv-T-min": "1,000", "cv-span": "T = 1,000 … 10,000 (one decade)",
                 "cv-step": S.step_condition_text(_const()), "cv-c": "10", "cv-d": "10", "cv-M": "1,000",
                 "cv-noise": "0.05", "cv-sigma2": "0.0025"}
    assert v["cv-step"].endswith("violated where γ is larger")  # 0.9 > 0.7 in the PL case


def test_result_values():
    fits = _fits(settings=(S.STANDARD, FORWARD))
    v = S.result_values(fits, _rhs(), [S.STANDARD, FORWARD])
    assert v["cv-backward-nonconvex"] == v["cv-backward-pl"] == "— (not run)"
    assert v["cv-forward-pl"] == S.exponent_comparison(fits, "pl", FORWARD)
    assert v["cv-forward-pl"].endswith("which does not contain the unperturbed −0.9")  # −0.89 ± 0.002
    assert v["cv-terms-nonconvex"] == S.standard_terms_text(_rhs(), "nonconvex")
    assert v["cv-perturbed"] == S.perturbed_ratio_text(_rhs())
    assert set(v) == {"cv-backward-nonconvex", "cv-backward-pl", "cv-forward-nonconvex", "cv-forward-pl",
                      "cv-terms-nonconvex", "cv-terms-pl", "cv-perturbed"}


def test_summary_values_has_every_glue_name_of_the_prose():
    settings = [S.STANDARD, FORWARD, BACKWARD]
    v = S.summary_values(_const(), _setups(), TS, 10.0, _fits(), _rhs(settings), settings)
    assert set(v) == {"cv-transient", "cv-T-min", "cv-span", "cv-step", "cv-c", "cv-d", "cv-M", "cv-noise", "cv-sigma2",
                      "cv-backward-nonconvex", "cv-backward-pl", "cv-forward-nonconvex", "cv-forward-pl",
                      "cv-terms-nonconvex", "cv-terms-pl", "cv-perturbed"}
    assert v["cv-backward-pl"].startswith("−0.88 (95 % interval")
    assert all(isinstance(x, str) for x in v.values())
