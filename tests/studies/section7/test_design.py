"""Section 7 grids, γ → 0 limits and the verdict statistics."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.section7 import design as X
from fbsgd import perturbations as P
from fbsgd.theory.small_step_limits import averaged_bias, small_step_limit
from fbsgd.engine.sweeps import RunConfig, run_sweep

ROOT = Path(__file__).resolve().parents[3]


def _defaults(notebook):
    nb = json.loads((ROOT / "chapters" / notebook).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    ns = {}
    exec("".join(cell["source"]), {}, ns)
    return ns


@pytest.mark.parametrize("notebook,key", [("frequent_zero_mean.ipynb", "frequent"), ("nonzero_mean.ipynb", "nonzero"), ("intermittent.ipynb", "intermittent")])
def test_book_grid_uses_the_chapters_defaults(notebook, key):
    ns = _defaults(notebook)
    for name, value in X.BOOK_DEFAULTS[key].items():
        assert ns[name] == value, f"{notebook}: {name} = {ns[name]!r}, book_grid assumes {value!r}"


def test_book_grid_is_deduplicated_and_at_paper_scale():
    grid = X.book_grid("paper")
    assert len({c.key() for c in grid}) == len(grid)
    assert all(c.T == 200_000 for c in grid)


def test_averaged_bias_jacobian_matches_finite_differences():
    cfg = RunConfig(perturbation="forward", sigma_f=1.5, interval=3, M=300)
    prob = cfg.problem()
    w = np.random.default_rng(0).standard_normal(cfg.d) * 0.3
    _, J = averaged_bias(prob, cfg.plan(), w)
    h = 1e-6
    fd = np.array([(averaged_bias(prob, cfg.plan(), w + h * e)[0] - averaged_bias(prob, cfg.plan(), w - h * e)[0]) / (2 * h) for e in np.eye(cfg.d)]).T
    np.testing.assert_allclose(J, fd, rtol=1e-5, atol=1e-9)


def test_limits_closed_forms():
    prob = RunConfig(regularizer="l2", rho=0.1).problem()
    a_bar = np.linalg.norm(prob.signed_features.mean(axis=0))
    sigma = 0.7
    biased = P.Plan(backward={2: P.nonzero_mean_uniform(sigma, 10)})
    r = small_step_limit(prob, biased)
    assert not r["escapes"] and r["plateau"] == pytest.approx(sigma / (2 * np.sqrt(10)) * a_bar, rel=1e-9)
    r0 = small_step_limit(prob, P.Plan(backward={2: P.zero_mean_uniform(2.0, 10)}))
    assert r0["plateau"] < 1e-12
    # intermittent: a tenth of the bias
    r10 = small_step_limit(prob, P.Plan(backward={2: P.every(10, P.nonzero_mean_uniform(sigma, 10))}))
    assert r10["plateau"] == pytest.approx(r["plateau"] / 10, rel=1e-9)


def test_forward_floor_prediction_matches_a_small_step_run():
    """The γ → 0 prediction is checked against the engine at a small step size, not against itself."""
    cfg = RunConfig(perturbation="forward", sigma_f=2.0, gamma=0.01, T=40_000)
    predicted, escapes = X.predicted_plateau(cfg)
    measured = run_sweep([cfg], cache_dir=False, progress=False, n_jobs=1).table.stable_grad_norm.iloc[0]
    assert not escapes and measured == pytest.approx(predicted, rel=0.05)


def _synthetic(slope_by_level, gammas=(0.003, 0.01, 0.03, 0.1), seeds=(0, 1, 2), floor=None):
    rows = []
    for (pert, sf, sb), slope in slope_by_level.items():
        for g in gammas:
            for s in seeds:
                v = 1e-3 * (g ** slope) * (1 + 0.01 * s)
                rows.append(dict(figure="f", panel={"none": "baseline", "forward": "left", "backward": "right"}[pert], regularizer="nonconvex",
                                 rho=0.001, perturbation=pert, mean="zero", sigma_f=sf, sigma_b=sb, interval=1, mode="per_sample",
                                 gamma=g, seed=s, stable_grad_norm=v, diverged=False))
    return pd.DataFrame(rows)


def test_small_step_slopes_recover_power_laws():
    t = _synthetic({("none", 0, 0): 0.5, ("forward", 1.0, 0): 0.0, ("backward", 0, 2.0): 0.3})
    s = X.small_step_slopes(t).set_index("perturbation")
    assert s.loc["none", "slope"] == pytest.approx(0.5, abs=1e-9)
    assert s.loc["forward", "slope"] == pytest.approx(0.0, abs=1e-9)
    assert s.loc["backward", "slope"] == pytest.approx(0.3, abs=1e-9)
    assert [X.trend(x) for x in (0.5, 0.0, 0.2, float("nan"))] == ["keeps decreasing", "levels off", "decreases slowly", "undetermined"]


def test_small_step_slopes_use_the_window_and_the_geometric_mean():
    t = _synthetic({("none", 0, 0): 0.5}, gammas=(0.003, 0.01, 0.03, 0.1, 1.0))
    t.loc[t.gamma == 1.0, "stable_grad_norm"] = 1e9  # outside the window of 3: must not matter
    s = X.small_step_slopes(t).iloc[0]
    assert s.slope == pytest.approx(0.5, abs=1e-9) and s.gamma_min == 0.003
    expected = 1e-3 * 0.003 ** 0.5 * np.exp(np.mean(np.log([1.0, 1.01, 1.02])))
    assert s.norm_at_gamma_min == pytest.approx(expected, rel=1e-12)
    assert X.slope_window([1.0, 0.003, 0.1, 0.01]) == [0.003, 0.01, 0.1]


def test_perturbed_iterations_is_ceil_T_over_interval():
    s = pd.DataFrame(dict(perturbation=["none", "forward", "forward"], interval=[1, 7, 1000]))
    assert list(X.perturbed_iterations(s, 1000)) == [0, 143, 1]


def test_geometric_mean_is_defined_once_and_skips_what_has_no_logarithm():
    from fbsgd import metrics
    from fbsgd.studies.budgets import verdicts as budget_analysis
    from fbsgd.studies.section7 import verdicts as section7_verdicts

    assert section7_verdicts.geometric_mean is metrics.geometric_mean is budget_analysis.geometric_mean
    assert metrics.geometric_mean([1.0, 100.0]) == pytest.approx(10.0)
    assert metrics.geometric_mean([4.0, np.nan, 0.0, -1.0, 1.0]) == pytest.approx(2.0)
    assert np.isnan(metrics.geometric_mean([np.nan, 0.0]))
    np.testing.assert_allclose(metrics.geometric_mean([[1.0, 4.0], [9.0, 1.0]], axis=1), [2.0, 3.0])
