"""Figure 4 with rounding: each run's drift, each curve's drift test at its smallest γ, and the facts
"leaves a floor" the chapter records by the book's one rule (fbsgd.studies.section7.verdicts.floor_found)."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.section7 import verdicts as S7V
from fbsgd import perturbations as PT
from fbsgd.book.verdicts import fact
from fbsgd.engine.sweeps import run_sweep
from fbsgd.metrics import drift_ratio, ewma
from fbsgd.studies.correctors import study as CS
from fbsgd.studies.real_mechanisms import study as MS
from fbsgd.studies.section7.verdicts import SETTING_S7


def test_run_figure4_drift_is_the_drift_ratio_of_the_runs_ewma():
    """Each run's drift is the correctors chapter's computation on the same stored trace, and it agrees with
    drift_ratio of the EWMA at every recorded iterate, recomputed here from the raw norms (fbsgd.metrics.ewma)."""
    common = dict(T=4000, metric_every=10, data_seed=0)
    configs = MS.mechanism_configs([PT.Round("float8_e5m2", "nearest")], [0.1, 0.3], [0], **common)
    res = MS.run_figure4(configs, n_jobs=1, cache_dir=False, progress=False)
    full = run_sweep(configs, n_jobs=1, cache_dir=False, progress=False, trace_points=2 * 400)
    for c, r in zip(configs, res.table.itertuples()):
        g = full.traces[full.traces.config_id == c.key()].sort_values("t")
        assert g.t.tolist() == list(range(0, 4000, 10))  # every recorded iterate
        want = drift_ratio(ewma(g.grad_norm.to_numpy(), c.ewma, c.metric_every))
        assert r.drift == pytest.approx(want, rel=2e-3)  # the stored trace interpolated onto every iterate
        mine = res.traces[res.traces.config_id == c.key()].sort_values("t")
        assert r.drift == S7V.trace_drift(mine.t.to_numpy(), mine.ewma.to_numpy(), c.T, c.metric_every)


def test_settled_curves_use_every_run_at_the_smallest_step_size():
    rows = []
    for fig, panel, d_small, d_big, div in [("a", "forward", [1.0, 1.1], [0.5, 0.5], False),
                                            ("a", "backward", [1.0, 0.7], [1.0, 1.0], False),
                                            ("b", "forward", [1.0, np.nan], [1.0, 1.0], True)]:
        for g, ds in ((0.01, d_small), (0.1, d_big)):
            for s, d in enumerate(ds):
                rows.append(dict(figure=fig, panel=panel, gamma=g, seed=s, drift=d, diverged=div and g == 0.01 and s == 1))
    st = MS.settled_curves(pd.DataFrame(rows)).set_index(["figure", "panel"])
    assert st.settled.to_dict() == {("a", "forward"): True, ("a", "backward"): False, ("b", "forward"): False}
    assert st.loc[("a", "backward"), "drift_min"] == pytest.approx(0.7) and (st.gamma_min == 0.01).all()


def test_floor_finds_by_the_books_rule_leave_undecided_cases_out():
    slopes = pd.DataFrame([dict(mechanism=m, place=p, slope=s, norm_at_gamma_min=n)
                           for m, p, s, n in [("sgd", "baseline", 0.5, 1.0),
                                              ("f8 nearest", "forward", 0.0, 3.0),  # flat, 3× SGD, settled: a floor
                                              ("f8 nearest", "backward", 0.5, 3.0),  # keeps decreasing: no floor
                                              ("f8 stochastic", "forward", 0.0, 3.0),  # flat and above, not settled: ?
                                              ("f8 stochastic", "backward", 0.0, 1.8)]])  # between 1.5 and 2×: ?
    rows = [("f8 nearest", "forward", True), ("f8 nearest", "backward", True), ("f8 stochastic", "forward", False),
            ("f8 stochastic", "backward", True), ("standard SGD", "baseline", True)]
    settled = pd.DataFrame([dict(figure=m, panel=p, settled=ok) for m, p, ok in rows])
    finds = MS.floor_finds(slopes, settled)
    assert finds == {fact("floor", "f8 nearest", "forward", SETTING_S7): True,
                     fact("floor", "f8 nearest", "backward", SETTING_S7): False}
    # standard SGD not settled at γ_min: the comparison with it cannot find a floor (only "no floor" by the slope)
    unsettled = settled.assign(settled=[True, True, False, True, False])
    assert MS.floor_finds(slopes, unsettled) == {fact("floor", "f8 nearest", "backward", SETTING_S7): False}
    cases = pd.DataFrame([dict(mechanism="f8 nearest", place="forward", gamma_min=0.1, predicted=3.0, method="c",
                               residual=0.0, escapes=False, measured=3.0, sgd_norm=1.0, sgd_low=1.0, sgd_high=1.0,
                               visible=True, ratio=1.0, agrees=True)])
    v = MS.prediction_verdict(lambda n: __import__("fbsgd.book.verdicts", fromlist=["Claim"]).Claim(
        id=f"t.{n}", chapter="t", ref="-", source="book", text=n), cases, "p", finds=finds)
    assert v.finds == finds and "floor | f8 nearest | forward" in v.record()["finds"]
