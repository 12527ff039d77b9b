"""What the derivatives-of-SGD chapter glues and shows, built by sgdd_verdicts / sgdd_studies, on
small synthetic tables whose answer is known."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.sgd_derivatives import sgd_prime as S
from fbsgd.studies.sgd_derivatives import study as SS
from fbsgd.studies.sgd_derivatives import verdicts as SV
from fbsgd.book.verdicts import Verdict, Ledger


def _plateaus():
    """Two problems (β = 1 first, then β = 0) with two steps each; η₀ differs between them."""
    return pd.DataFrame(dict(setting=["general", "general", "double_interpolation", "double_interpolation"],
                             beta=[1.0, 1.0, 0.0, 0.0], eta=[0.2, 0.1, 0.02, 0.04],
                             eta0_theorem=[0.5, 0.5, 0.01, 0.01], eta_over_eta0=[0.4, 0.2, 2.0, 4.0],
                             plateau=[1.0, 0.5, 2.0, 4.0], exact_stationary=np.nan, poster_bound=np.nan))


def test_setup_values():
    v = SV.setup_values(4, 200, 10_000, [0.25, 0.03125, 0.5])
    assert v == {"sgdd-n-seeds": 4, "sgdd-fd-iters": 200, "sgdd-const-iters": 10_000, "sgdd-c-min": 0.03125,
                 "sgdd-c-max": 0.5}


def test_step_values_take_eta0_of_least_squares():
    v = SV.step_values(_plateaus())
    assert v["sgdd-eta0"] == 0.01  # the β = 0 rows, not the first row
    assert (v["sgdd-ratio-min"], v["sgdd-ratio-max"]) == (0.2, 4.0)
    assert v["sgdd-range-text"] == ("2 of 4 steps are larger than that limit, so those test the theorem beyond its "
                                    "stated range")
    assert all(type(v[k]) is float for k in ("sgdd-eta0", "sgdd-ratio-min", "sgdd-ratio-max"))
    no_ols = _plateaus().query("beta > 0")
    assert SV.step_values(no_ols)["sgdd-eta0"] == 0.5  # no β = 0: the first problem's η₀


def test_summary_values_has_every_glue_name_of_the_prose():
    led = Ledger("sgd_derivatives")
    led.add(Verdict(led.claim("plateau_linear"), "holds", "r", "e", key_number=0.93))
    led.add(Verdict(led.claim("ols_below_bound"), "fails", "r", "e", key_number=1.5))
    v = SV.summary_values(led, _plateaus(), 4, 200, 10_000, [0.125, 0.5])
    sums = ["plateau", "exact", "bound", "decreasing", "log2", "interpolation", "interpolation-exact", "simple",
            "ols-zero", "orders", "pl"]
    assert set(v) == ({"sgdd-n-seeds", "sgdd-fd-iters", "sgdd-const-iters", "sgdd-c-min", "sgdd-c-max", "sgdd-eta0",
                       "sgdd-ratio-min", "sgdd-ratio-max", "sgdd-range-text"} | {f"sgdd-sum-{k}" for k in sums})
    assert v["sgdd-sum-plateau"].startswith("the Jacobian error settles at a level proportional to η")
    assert v["sgdd-sum-plateau"].endswith("(slope farthest from 1: 0.93)")
    assert v["sgdd-sum-bound"] == "it exceeds Iutzeler et al.'s bound (largest plateau / bound 1.5)"
    assert v["sgdd-sum-pl"].endswith("was not judged")
    assert v["sgdd-c-max"] == 0.5 and v["sgdd-eta0"] == 0.01


def test_generate_problems_and_constants_table():
    problems = SS.generate_problems(3, 12, ["general", "double_interpolation"], [0.0, 1.0], 7)
    assert list(problems) == [("general", 0.0), ("general", 1.0), ("double_interpolation", 0.0),
                              ("double_interpolation", 1.0)]
    ref = S.ParametricLeastSquares.generate(3, 12, "double_interpolation", 1.0, 7)
    got = problems[("double_interpolation", 1.0)]
    np.testing.assert_array_equal(got.A, ref.A)
    np.testing.assert_array_equal(got.theta, ref.theta)
    assert got.curvature == 1.0 and got.setting == "double_interpolation"

    fake = {("general", 0.0): SimpleNamespace(p=5, constants=dict(mu=1.0, L=2.0)),
            ("double_interpolation", 1.0): SimpleNamespace(p=3, constants=dict(mu=0.5, L=1.0))}
    t = SS.constants_table(fake)
    assert list(t.columns) == ["setting", "beta", "p", "mu", "L", "eta0"]
    assert t.setting.tolist() == ["general", "double_interpolation"] and t.p.tolist() == [5, 3]
    assert t.eta0.tolist() == [1.0 / 16, 0.5 / 4]  # μ/(4L²)


def test_main_setting_and_mu_over_L():
    assert SS.main_setting(["double_interpolation", "general"]) == "general"
    assert SS.main_setting(["simple_interpolation", "double_interpolation"]) == "simple_interpolation"
    problems = {("double_interpolation", 0.0): SimpleNamespace(constants=dict(mu=0.5, L=4.0)),
                ("double_interpolation", 1.0): SimpleNamespace(constants=dict(mu=1.0, L=2.0))}
    assert SS.interpolation_mu_over_L(problems, [1.0, 0.0]) == 0.125  # smallest β
    assert SS.interpolation_mu_over_L(problems, [2.0]) == 1.0  # that problem was not run


def test_ends_of_keeps_smallest_and_largest_step_per_group():
    t = pd.DataFrame(dict(setting=["b", "b", "b", "a", "a"], beta=0.0, eta=[0.3, 0.1, 0.2, 0.5, 0.4],
                          value=[3, 1, 2, 5, 4]))
    ends = SS.ends_of(t, ["setting", "beta"])
    assert list(zip(ends.setting, ends.eta)) == [("a", 0.4), ("a", 0.5), ("b", 0.1), ("b", 0.3)]
    one = SS.ends_of(t[t.eta == 0.5], ["setting", "beta"])
    assert one.eta.tolist() == [0.5]  # one step: one row, not two


def _headers(view):
    return list(view.data.columns)


def test_table_views_show_the_chosen_columns_with_printed_headers():
    assert SS.plain_setting("double_interpolation") == "double interpolation"
    const = pd.DataFrame(dict(setting=["simple_interpolation"], beta=[0.0], p=[50], mu=[0.5], L=[9.0], M=[0.0],
                              sigma2_x=[0.0], sigma2_D=[1.25], eta0=[0.0015]))
    view = SS.constants_view(const)
    assert _headers(view)[-2:] == ["σ_x²", "σ_D²"] and "p" not in _headers(view) and len(_headers(view)) == 7
    html = view.to_html()
    assert "simple interpolation" in html and "simple_interpolation" not in html
    assert "Constants of Iutzeler et al.'s assumptions" in html

    ends = SS.plateau_ends_view(_plateaus())
    assert len(ends.data) == 4 and _headers(ends)[3] == "η/η₀" and _headers(ends)[-1] == "Iutzeler et al. bound"
    assert ends.data["η/η₀"].tolist() == [2.0, 4.0, 0.2, 0.4]  # sorted by setting, β, η

    rates = pd.DataFrame(dict(setting="double_interpolation", beta=0.0, quantity="D", eta=[0.1, 0.2, 0.3],
                              rate=[0.9, 0.8, 0.7], exact_rate=0.123456789, bound_rate=0.95))
    rv = SS.rate_ends_view(rates)
    assert _headers(rv)[4:] == ["fitted ρ̂", "exact", "1 − μη/2"] and rv.data["fitted ρ̂"].tolist() == [0.9, 0.7]
    assert "0.123457" in rv.to_html()  # 6 significant figures

    decr = pd.DataFrame(dict(beta=[0.0], k0=[100.0], window_start=[1500.0], slope=[-1.0], slope_se=[0.01],
                             bound_local_slope=[-0.85], exact_slope=[-1.0], x_slope=[-1.0]))
    assert _headers(SS.decreasing_view(decr)) == ["β", "k₀", "window from k", "slope", "s.e.", "bound's slope",
                                                  "exact slope"]
    slopes = pd.DataFrame(dict(setting=["general"], beta=[0.0], slope=[1.0], slope_se=[0.02], max_rel_to_exact=[0.01],
                               max_ratio_to_bound=[0.3]))
    assert _headers(SS.slopes_view(slopes))[3:] == ["s.e.", "max gap to exact", "max plateau / bound"]
    fits = pd.DataFrame(dict(regime=["constant steps"], setting=["general"], measured=["x"], exponent=[0.5], se=[0.1],
                             predicted=[0.5]))
    assert "s.e." in _headers(SS.error_term_view(fits))


@pytest.mark.parametrize("name", ["constants_view", "plateau_ends_view", "decreasing_view", "rate_ends_view"])
def test_views_refuse_a_table_without_their_columns(name):
    with pytest.raises(KeyError):
        getattr(SS, name)(pd.DataFrame(dict(nothing=[1])))
