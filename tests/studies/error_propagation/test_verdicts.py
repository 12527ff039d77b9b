"""The error-propagation verdicts on synthetic tables whose outcome is known."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.error_propagation import study as S
from fbsgd.studies.error_propagation import verdicts as PV
from fbsgd.book.verdicts import Claim

CLAIM = Claim(id="error_propagation.x", chapter="error_propagation", ref="test", source="book", text="test claim")


def _tight(measured, bound, derived=None, case="Theorem 2 · linear"):
    n = len(measured)
    return pd.DataFrame(dict(case=case, perturbation="δ₁", N=np.arange(2, 2 + n), measured=measured, measured_se=np.zeros(n),
                             bound=bound, bound_derivation=derived if derived is not None else bound,
                             ratio=np.asarray(bound) / np.asarray(measured),
                             ratio_derivation=np.asarray(derived if derived is not None else bound) / np.asarray(measured)))


def test_a_bound_fails_on_one_violation_and_holds_with_the_corrected_constant():
    t = _tight([1.0, 1.0, 1.0], [0.0, 5.0, 50.0], derived=[2.0, 10.0, 100.0])
    printed = PV.bound_holds(CLAIM, t, "Theorem 2", "printed", erratum="x")
    assert printed.outcome == "fails" and "1 of 3" in printed.evidence and printed.erratum == "x"
    assert PV.bound_holds(CLAIM, t, "Theorem 2", "derivation").outcome == "holds"
    assert PV.bound_holds(CLAIM, t, "Theorem 1", "printed").outcome == "unresolved"


def _growth(lows):
    return pd.DataFrame(dict(chain="tanh", perturbation="δ₁", measured_factor=np.array(lows) + 0.1, measured_ci_low=lows,
                             measured_ci_high=np.array(lows) + 0.2, closed_form_factor=np.nan, bound_factor_fit=10.0,
                             bound_factor_first=10.0, bound_factor_last=10.0, depths="2..8"))


def test_depth_growth_holds_partial_fails():
    assert PV.depth_growth(CLAIM, _growth([1.2, 1.5]), 1.2).outcome == "holds"
    assert PV.depth_growth(CLAIM, _growth([0.9, 1.5]), 1.2).outcome == "partial"
    assert PV.depth_growth(CLAIM, _growth([0.9, 0.5]), 1.2).outcome == "fails"


def test_closed_form_and_bound_growth_verdicts():
    lin = pd.DataFrame(dict(chain="linear", N=[2, 4, 8], mse=[1.0, 2.0, 4.0], exact_mse=[1.0, 2.01, 4.0], mse_se=0.01,
                            bias_sq=0.0, exact_bias_sq=0.0, bias_sq_se=0.0))
    v = PV.closed_form(CLAIM, lin, 1000)
    assert v.outcome == "holds" and v.key_number == pytest.approx(1.0) and v.threshold == "< 4.5 standard errors"
    assert PV.closed_form(CLAIM, lin.assign(mse=[1.0, 2.1, 4.0]), 1000).outcome == "fails"  # 9 standard errors off
    g = _growth([1.2, 1.5])
    assert PV.bound_outgrows(CLAIM, g).outcome == "holds"
    slow = g.assign(bound_factor_fit=[10.0, 1.0])  # the bound's factor below the measured 1.6 in one case
    v = PV.bound_outgrows(CLAIM, slow)
    assert v.outcome == "partial" and v.key_number == pytest.approx(1.0 / 1.6)


def test_growth_table_recovers_a_geometric_rate():
    N = np.arange(2, 9)
    depth = pd.DataFrame(dict(chain="tanh", label="δ₁", law="zero-mean", N=N, mse=3.0 * 1.5 ** N, mse_bound=2.0 * 7.0 ** N))
    g = S.growth(depth).iloc[0]
    assert g.measured_factor == pytest.approx(1.5) and g.bound_factor_fit == pytest.approx(7.0)
    assert g.bound_factor_first == pytest.approx(7.0) and g.bound_factor_last == pytest.approx(7.0)


def _bias(series, sigma, bias_sq, se):
    return pd.DataFrame(dict(series=series, sigma=sigma, bias_sq=bias_sq, bias_sq_se=se, z=np.asarray(bias_sq) / np.asarray(se),
                             mse=1.0, bias_bound=1e3 * np.asarray(sigma) ** 4))


def test_bias_order_and_null_verdicts():
    s = np.geomspace(0.1, 1.0, 5)
    quartic = _bias("tanh · zero-mean · δ₁", s, 1e-2 * s ** 4, 1e-2 * s ** 4 / 50)
    assert PV.forward_bias(CLAIM, quartic, 7).outcome == "holds"
    assert PV.forward_bias_order(CLAIM, quartic, s).outcome == "holds"
    square = _bias("tanh · zero-mean · δ₁", s, 1e-2 * s ** 2, 1e-2 * s ** 2 / 50)
    assert PV.forward_bias_order(CLAIM, square, s).outcome == "fails"
    unresolved = _bias("tanh · zero-mean · δ₁", s, 1e-6 * np.ones(5), np.ones(5))
    assert PV.forward_bias_order(CLAIM, unresolved, s).outcome == "unresolved"
    assert PV.forward_bias(CLAIM, unresolved, 7).outcome == "fails"
    null = _bias("linear · zero-mean · δ₁", s, [0.1, -0.2, 0.3, 0.0, 5.0], np.ones(5))
    assert PV.no_bias(CLAIM, null, "linear · zero-mean · δ₁", 100).outcome == "fails"
    null.loc[4, ["bias_sq", "z"]] = 1.0
    assert PV.no_bias(CLAIM, null, "linear · zero-mean · δ₁", 100).outcome == "holds"


def test_nonzero_mean_order_partial():
    s = np.geomspace(0.1, 1.0, 5)
    b = pd.concat([_bias("tanh · non-zero-mean · δ₁", s, s ** 2, s ** 2 / 100),
                   _bias("tanh · non-zero-mean · ε_N", s, s ** 3, s ** 3 / 100)], ignore_index=True)
    assert PV.nonzero_mean_order(CLAIM, b).outcome == "partial"


def test_hierarchy_and_looseness():
    rows = [dict(chain="c", N=4, where="forward", k=k, mse=m, mse_bound=10 * m) for k, m in ((1, 8.0), (2, 4.0), (3, 2.0))]
    rows += [dict(chain="c", N=4, where="backward", k=k, mse=m, mse_bound=10 * m) for k, m in ((2, 3.0), (3, 2.0), (4, 1.0))]
    h = S.hierarchy(pd.DataFrame(rows))
    assert h.forward_ratio.iloc[0] == pytest.approx(4.0) and h.backward_ratio.iloc[0] == pytest.approx(1 / 3)
    assert PV.location_hierarchy(CLAIM, h).outcome == "partial"
    t = _tight([1.0, 1.0, 1.0], [10.0, 100.0, 1000.0], case="Theorem 1 · x")
    loose = S.looseness(t)
    assert loose.orders_per_operator.iloc[0] == pytest.approx(1.0)
    assert PV.bounds_loose(CLAIM, loose).outcome == "holds"
    assert PV.bounds_loose(CLAIM, S.looseness(_tight([1.0] * 3, [1000.0, 100.0, 10.0]))).outcome == "fails"


def test_printed_bias_crossover_is_where_sigma4_meets_sigma2():
    depth = pd.DataFrame(dict(chain="linear", law="non-zero-mean", N=[3], bias_sq=[4.0], bias_bound=[1.0]))
    # bias ∝ σ², bound ∝ σ⁴: at σ* = σ·√(bias/bound) they meet
    assert PV.printed_bias_crossover(depth, 0.1).sigma_star.iloc[0] == pytest.approx(0.2)


def test_page_views_of_growth_looseness_and_summary():
    g = _growth([1.2, 1.5]).assign(bound_factor_first=[273.0, 10.0], bound_factor_last=[88315.0, 10.0])
    view = S.growth_view(g)
    assert list(view.columns) == ["chain", "perturbation", "measured", "closed_form", "bound_fit", "bound_shallow_to_deep"]
    assert view.measured.iloc[0] == "1.3 (1.2–1.4)" and view.bound_shallow_to_deep.iloc[0] == "273 → 88,315"
    t = pd.concat([_tight([1.0] * 3, [10.0, 100.0, 1000.0], case="Theorem 1 · x"),
                   _tight([1.0] * 3, [0.0, 0.0, 0.0], derived=[10.0, 100.0, 1000.0])], ignore_index=True)
    loose = S.looseness(t)
    assert list(loose.constants) == ["printed", "derivation"]
    lv = S.looseness_view(loose)
    assert lv.case.iloc[0] == "Theorem 1 · x · δ₁" and lv.ratio.iloc[0] == "10 → 1,000" and len(lv.columns) <= 7
    h = pd.DataFrame(dict(chain=["c"], N=[4], forward_ratio=[4.0], forward_ratio_bound=[40.0], backward_ratio=[3.0],
                          backward_ratio_bound=[30.0]))
    s = np.geomspace(0.1, 1.0, 5)
    b = pd.concat([_bias("tanh · zero-mean · δ₁", s, 1e-2 * s ** 4, 1e-4 * s ** 4),
                   _bias("tanh · zero-mean · ε_N", s, 0 * s, np.ones(5))], ignore_index=True)
    summ = S.summary(g, h, b, loose, s, 7)
    tight = summ[summ.quantity.str.startswith("tightness")]
    assert len(tight) == 2 and tight.measured.isna().all() and tight.bound.str.startswith("bound / measured").all()
    assert not summ.quantity.str.contains("₍").any() and "δ₁ / δ_(N−1), c, N = 4" in set(summ.quantity)
