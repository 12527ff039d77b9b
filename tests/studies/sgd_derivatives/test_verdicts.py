"""The verdict rules and studies of the derivatives-of-SGD chapter on synthetic inputs whose outcome is known."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.sgd_derivatives import sgd_prime as S
from fbsgd.studies.sgd_derivatives import study as SS
from fbsgd.studies.sgd_derivatives import verdicts as SV
from fbsgd.book import verdicts as V


@pytest.fixture
def ledger():
    return V.Ledger("sgd_derivatives")


def test_three_way():
    assert SV.three_way([True, True], [False, False]) == "holds"
    assert SV.three_way([False, False], [True, True]) == "fails"
    assert SV.three_way([True, False], [False, True]) == "partial"
    assert SV.three_way([True, False], [False, False]) == "unresolved"


def _decr(slopes, se=0.01, bound=-0.845):
    return pd.DataFrame(dict(beta=[0.0, 1.0][: len(slopes)], slope=slopes, slope_se=se, bound_local_slope=bound, window_start=1e5,
                             k0=1e4, x_slope=-1.0, max_rel_to_exact=[0.1, np.nan][: len(slopes)],
                             exact_slope=[-1.0, np.nan][: len(slopes)], eps_bias_slope=-0.5, e_max=0.0))


def test_decreasing_rate_and_log2_probe(ledger):
    assert SV.judge_decreasing_rate(ledger, _decr([-0.95, -0.93])).outcome == "holds"
    assert SV.judge_decreasing_rate(ledger, _decr([-0.95, -0.7])).outcome == "partial"
    assert SV.judge_decreasing_rate(ledger, _decr([-0.6, -0.7])).outcome == "fails"
    # midpoint of −1 and −0.845 is −0.9225
    assert SV.judge_log2_not_tight(ledger, _decr([-1.0, -0.98])).outcome == "holds"
    assert SV.judge_log2_not_tight(ledger, _decr([-0.85, -0.86])).outcome == "fails"
    assert SV.judge_log2_not_tight(ledger, _decr([-1.0, -0.86])).outcome == "partial"
    assert SV.judge_log2_not_tight(ledger, _decr([-0.951, -0.929], se=[0.010, 0.012])).outcome == "unresolved"


def test_plateau_verdicts(ledger):
    slopes = pd.DataFrame(dict(setting=["general", "simple_interpolation"], beta=0.0, slope=[1.01, 1.1], slope_se=0.01,
                               max_rel_to_exact=[0.05, 0.08], max_ratio_to_bound=[0.06, 0.07]))
    assert SV.judge_plateau_linear(ledger, slopes, [0.1, 0.2], 100, 2).outcome == "holds"
    assert SV.judge_plateau_linear(ledger, slopes.assign(slope=[1.0, 1.3]), [0.1], 100, 2).outcome == "partial"
    assert SV.judge_plateau_linear(ledger, slopes.assign(slope=[0.5, 1.3]), [0.1], 100, 2).outcome == "fails"
    assert SV.judge_ols_exact_plateau(ledger, slopes).outcome == "holds"
    assert SV.judge_ols_exact_plateau(ledger, slopes.assign(max_rel_to_exact=[0.05, 0.2])).outcome == "partial"
    assert SV.judge_ols_below_bound(ledger, slopes.assign(max_ratio_to_bound=[1.5, 2.0])).outcome == "fails"
    assert SV.judge_ols_below_bound(ledger, slopes.assign(beta=1.0)).outcome == "unresolved"


def test_interpolation_verdicts(ledger):
    rates = pd.DataFrame(dict(setting="double_interpolation", quantity="Jacobian", beta=0.0, eta=[0.01, 0.02],
                              rate=[0.98, 0.96], exact_rate=[0.98, 0.961], bound_rate=[0.995, 0.99]))
    assert SV.judge_interpolation_rate(ledger, rates).outcome == "holds"
    assert SV.judge_interpolation_rate(ledger, rates.assign(rate=[0.98, 0.995])).outcome == "partial"
    assert SV.judge_interpolation_exact(ledger, rates).outcome == "holds"
    assert SV.judge_interpolation_exact(ledger, rates.assign(exact_rate=[0.9, 0.8])).outcome == "fails"
    assert SV.judge_interpolation_rate(ledger, rates.iloc[:0]).outcome == "unresolved"


def test_error_term_verdicts(ledger):
    fits = pd.DataFrame(dict(regime="constant steps", setting=["general", "double_interpolation"], measured="bias vs ‖x − x*‖",
                             exponent=[1.05, 2.9], se=0.01, predicted=[1.0, 3.0]))
    pl = pd.DataFrame(dict(beta=[1.0], e_max=[0.1]))
    assert SV.judge_error_term_orders(ledger, fits, pl, 1.0).outcome == "holds"
    assert SV.judge_error_term_orders(ledger, fits.assign(exponent=[1.05, 2.0]), pl, 1.0).outcome == "partial"
    d = _decr([-0.95, -0.93]).assign(eps_bias_slope=[np.nan, -0.3])
    assert SV.judge_pl_condition_edge(ledger, d, 1.0).outcome == "fails"
    assert SV.judge_pl_condition_edge(ledger, d.assign(eps_bias_slope=-0.5), 1.0).outcome == "holds"
    z = pd.DataFrame(dict(beta=[0.0], e_max=[0.0]))
    assert SV.judge_ols_error_zero(ledger, z, z).outcome == "holds"
    assert SV.judge_ols_error_zero(ledger, z.assign(e_max=1e-3), z).outcome == "fails"


def test_predicted_bias_order():
    assert SS.predicted_bias_order(1.0, 1.0) == 1.0
    assert SS.predicted_bias_order(0.0, 1.0) == 2.0
    assert SS.predicted_bias_order(0.0, 0.0) == 3.0


def test_fitting_window():
    assert SS.fitting_window(1_000_000, 1000) == 100_000
    assert SS.fitting_window(1_000_000, 20_000) == 300_000
    assert SS.fitting_window(100_000, 20_000) == 50_000  # 15k0 beyond 0.6K: the second half


def test_run_table_and_fd_check():
    pr = S.ParametricLeastSquares.generate(3, 8, "general", 1.0, 0)
    fd = SS.finite_difference_check(pr, 30, 0)
    assert fd.fd_gap.iloc[0] < 1e-6 and fd.star_gap.iloc[0] < 1e-6
    ck = np.array([0, 5, 10])
    r = S.run_sgd_prime(pr, S.constant_steps(0.1 / pr.constants["L"], 10), [0, 1], ck)
    t = SS.run_table(r, setting="general", beta=1.0)
    assert list(t.columns[:4]) == ["setting", "beta", "seed", "k"] and len(t) == 6
    assert np.allclose(t[t.seed == 1].D_err2, r["D_err2"][1])


def test_finite_difference_verdicts_on_a_real_check(ledger):
    pr = S.ParametricLeastSquares.generate(3, 8, "general", 1.0, 0)
    fd = SS.finite_difference_check(pr, 30, 0)
    v = SV.judge_unrolled_derivative(ledger, fd)
    assert v.outcome == "holds" and v.key_number < SV.FD_TOL and v.threshold.startswith("< 1e-06")
    assert SV.judge_solution_jacobian(ledger, fd).outcome == "holds"
    off = fd.assign(fd_gap=1e-3)  # the recursion misses the finite differences, the kernel still agrees
    assert SV.judge_unrolled_derivative(ledger, off).outcome == "partial"
    assert SV.judge_solution_jacobian(ledger, fd.assign(star_gap=1e-3)).outcome == "fails"


def test_simple_interpolation_verdict(ledger):
    plateaus = pd.DataFrame(dict(setting="simple_interpolation", beta=0.0, plateau=[1e-3, 2e-3]))
    rates = pd.DataFrame(dict(setting="simple_interpolation", quantity="iterate", beta=0.0, rate=[0.9, 0.95]))
    drops = pd.DataFrame(dict(beta=0.0, fraction=[0.1, 0.2], x_drop=[1e-9, 1e-8], D_drop=[0.5, 0.2]))
    v = SV.judge_simple_interpolation(ledger, rates, drops, plateaus)
    assert v.outcome == "holds" and v.key_number == pytest.approx(0.2)
    assert SV.judge_simple_interpolation(ledger, rates, drops.assign(D_drop=1e-6), plateaus).outcome == "partial"
    assert SV.judge_simple_interpolation(ledger, rates, drops, plateaus.iloc[:0]).outcome == "unresolved"


def test_interpolation_rates_recover_a_known_geometric_decay():
    pr = S.ParametricLeastSquares.generate(2, 4, "double_interpolation", 0.0, 0)
    k = np.arange(0, 200, 10)
    curves = pd.DataFrame(dict(setting="double_interpolation", beta=0.0, fraction=0.1, eta=0.01, seed=0, k=k,
                               D_err2=0.9 ** k, x_err2=0.8 ** k))
    rates = SS.interpolation_rates(curves, {("double_interpolation", 0.0): pr})
    got = dict(zip(rates.quantity, rates.rate))
    assert got["Jacobian"] == pytest.approx(0.9) and got["iterate"] == pytest.approx(0.8)


def test_set_prints_numbers_as_a_set():
    from fbsgd.studies.sgd_derivatives.verdicts import _set
    assert _set([0.0625, 0.03125, 0.0625]) == "{0.03125, 0.0625}"


def test_theorem_step_and_the_range_sentence():
    assert SS.theorem_step(dict(mu=0.5, L=2.0)) == pytest.approx(0.5 / 16)
    pr = S.ParametricLeastSquares.generate(3, 8, "general", 0.0, 0)
    eta0 = SS.theorem_step(pr.constants)
    plateaus, _, _ = SS.constant_step_study({("general", 0.0): pr}, [0.25], 40, [0], np.array([0, 20, 40]))
    assert plateaus.eta_over_eta0.iloc[0] == pytest.approx(0.25 / pr.constants["L"] / eta0)
    outside = SV.beyond_theorem(pd.DataFrame(dict(eta_over_eta0=[3.86, 61.7])))
    assert "every step is larger" in outside and "3.86 to 61.7" in outside
    assert "2 of 3 steps" in SV.beyond_theorem(pd.DataFrame(dict(eta_over_eta0=[0.5, 2.0, 4.0])))
    assert "satisfies" in SV.beyond_theorem(pd.DataFrame(dict(eta_over_eta0=[0.5, 1.0])))
    assert SV.beyond_theorem(pd.DataFrame(dict(eta=[1.0]))) == "" and SV.beyond_theorem(None) == ""


def test_log2_probe_says_the_fit_se_understates_the_uncertainty(ledger):
    v = SV.judge_log2_not_tight(ledger, _decr([-0.951, -0.929], se=[0.010, 0.012]).assign(exact_slope=[-1.002, np.nan]))
    assert "5.1 s.e. from the exact one" in v.evidence and "understates" in v.evidence


def test_step_range_text_and_summary_texts():
    import pandas as pd
    from fbsgd.studies.sgd_derivatives import verdicts as SVx
    from fbsgd.book.verdicts import Verdict, Ledger

    assert SVx.step_range_text(pd.DataFrame(dict(eta_over_eta0=[2.0, 5.0]))).startswith("every step is larger")
    assert SVx.step_range_text(pd.DataFrame(dict(eta_over_eta0=[0.5, 1.0]))).startswith("every step is within")
    assert SVx.step_range_text(pd.DataFrame(dict(eta_over_eta0=[0.5, 3.0]))).startswith("1 of 2 steps")
    led = Ledger("sgd_derivatives")
    led.add(Verdict(led.claim("plateau_linear"), "fails", "r", "e", key_number=0.5))
    led.add(Verdict(led.claim("error_term_orders"), "partial", "r", "e", key_number=0.27))
    t = SVx.summary_texts(led)
    assert t["plateau"] == "the plateau is not proportional to η (slope farthest from 1: 0.5)"
    assert "only in part (largest gap 0.27" in t["orders"]
    assert t["pl"].endswith("was not judged")
