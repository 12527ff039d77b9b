"""The real-mechanisms chapter's γ → 0 predictions (fbsgd.studies.real_mechanisms.study): each curve's
prediction from its own mechanism at its own place, the cases set against standard SGD's seed range,
the verdict's four marks, the figure that draws every prediction, and one prediction at the book's
problem against an independent estimate (noise-free gradient descent through the training loop)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fbsgd import perturbations as PT
from fbsgd.book.verdicts import Claim
from fbsgd.engine.sweeps import RunConfig
from fbsgd.optimizers import SGD, PassGradient, train
from fbsgd.studies.real_mechanisms import study as MS
from fbsgd.studies.real_mechanisms.figures import mechanism_panels
from fbsgd.studies.section7.verdicts import AGREEMENT_BAND, RECOVERY_FACTOR


def claim(name):
    return Claim(id=f"t.{name}", chapter="t", ref="-", source="book", text=name)


NEAREST, STOCHASTIC = PT.Round("float8_e5m2", "nearest"), PT.Round("float8_e5m2", "stochastic")


def _sweep(mechanisms, gammas=(0.01, 0.1), seeds=(0, 1), norm=lambda cfg: 1.0, **common):
    """A sweep table of the chapter's configurations with made-up stable norms (``norm(cfg)``)."""
    rows = [dict(cfg.fields(), stable_grad_norm=norm(cfg), diverged=False)
            for cfg in MS.mechanism_configs(mechanisms, gammas, seeds, **common)]
    return pd.DataFrame(rows)


# -- attach_predictions -----------------------------------------------------------------------------


def test_each_curve_is_predicted_from_its_own_mechanism_at_its_own_place(monkeypatch):
    seen = []

    def fake_limit(problem, plan):
        (place, p), = [("forward", v) for v in plan.forward.values()] + [("backward", v) for v in plan.backward.values()]
        seen.append((p.label, place, problem.M))
        return dict(w=None, plateau=len(seen) * 1e-3, escapes=place == "forward", method="conditional",
                    residual=len(seen) * 1e-6)

    monkeypatch.setattr(MS, "small_step_limit", fake_limit)
    table = _sweep([NEAREST, STOCHASTIC], M=40, d=3)
    slopes = MS.attach_predictions(MS.mechanism_slopes(table), [STOCHASTIC, NEAREST], RunConfig(M=40, d=3))
    curves = slopes[slopes.place != "baseline"]
    assert [(m, p, 40) for m, p in zip(curves.mechanism, curves.place)] == seen  # one call per curve, its own object
    assert sorted(seen) == sorted((p.label, pl, 40) for p in (NEAREST, STOCHASTIC) for pl in ("forward", "backward"))
    np.testing.assert_allclose(curves.predicted_limit, 1e-3 * np.arange(1, 5))
    np.testing.assert_allclose(curves.residual, 1e-6 * np.arange(1, 5))
    assert list(curves.escapes) == [p == "forward" for p in curves.place]
    assert set(curves.method) == {"conditional"}
    base = slopes[slopes.place == "baseline"].iloc[0]
    assert (base.predicted_limit, base.method, base.residual, bool(base.escapes)) == (0.0, "none", 0.0, False)


def test_a_curve_without_its_mechanism_is_refused_before_anything_is_computed(monkeypatch):
    def never(problem, plan):
        raise AssertionError("small_step_limit must not run")

    monkeypatch.setattr(MS, "small_step_limit", never)
    slopes = MS.mechanism_slopes(_sweep([NEAREST, STOCHASTIC], M=40, d=3))
    with pytest.raises(ValueError, match="mechanisms must hold the perturbation of every curve.*float8_e5m2 stochastic"):
        MS.attach_predictions(slopes, [NEAREST], RunConfig(M=40, d=3))


def test_tiny_problem_stochastic_backward_predicts_no_floor_and_nearest_one():
    """On a small problem with the real limit: stochastic rounding of the backward message is unbiased
    given its input, so the averaged gradient is ∇f and its zero the minimizer (no floor); rounding to
    nearest in e5m2 (2 mantissa bits) is biased given its input and leaves one."""
    table = _sweep([NEAREST, STOCHASTIC], M=60, d=3)
    slopes = MS.attach_predictions(MS.mechanism_slopes(table), [NEAREST, STOCHASTIC], RunConfig(M=60, d=3))
    at = slopes.set_index(["mechanism", "place"])
    assert at.loc[(STOCHASTIC.label, "backward"), "predicted_limit"] < 1e-10
    assert at.loc[(NEAREST.label, "backward"), "predicted_limit"] > 1e-4
    assert set(at.method.drop(("standard SGD", "baseline"))) == {"conditional"}


# -- prediction_cases and the verdict -----------------------------------------------------------------


def _cases(rows, sgd=(0.9, 1.1), gamma=0.01):
    """Cases from (mechanism, place, predicted, measured) with standard SGD's seeds ``sgd`` at ``gamma``."""
    table = pd.DataFrame([dict(figure="standard SGD", panel="baseline", gamma=gamma, seed=i, stable_grad_norm=v,
                               diverged=False) for i, v in enumerate(sgd)])
    slopes = pd.DataFrame([dict(mechanism="standard SGD", place="baseline", gamma_min=gamma, norm_at_gamma_min=1.0,
                                predicted_limit=0.0, method="none", residual=0.0, escapes=False)]
                          + [dict(mechanism=m, place=p, gamma_min=gamma, norm_at_gamma_min=meas, predicted_limit=pred,
                                  method="conditional", residual=1e-9, escapes=False) for m, p, pred, meas in rows])
    return MS.prediction_cases(slopes, table)


def test_cases_visibility_is_the_top_of_standard_sgds_seed_range():
    c = _cases([("a", "forward", 5.0, 5.5), ("b", "backward", 1.05, 1.2), ("c", "forward", 1.2, 1.3),
                ("d", "backward", 0.5, 1.6)], sgd=(0.9, 1.1))
    assert c.sgd_high.tolist() == [1.1] * 4 and c.sgd_low.tolist() == [0.9] * 4
    assert c.sgd_norm.iloc[0] == pytest.approx(np.sqrt(0.9 * 1.1))
    assert c.visible.tolist() == [True, False, True, False]  # 1.05 lies inside SGD's range 0.9–1.1
    np.testing.assert_allclose(c.ratio, [1.1, 1.2 / 1.05, 1.3 / 1.2, 3.2])
    # visible: ratio in the band; not visible: S within RECOVERY_FACTOR × SGD's (1.6 / 0.995 > 1.5)
    assert c.agrees.tolist() == [True, True, True, False]
    assert _cases([("z", "backward", 0.0, 1.0)]).ratio.iloc[0] == np.inf  # an exact zero is a prediction too


@pytest.mark.parametrize("rows, outcome, mark", [
    ([("a", "forward", 5.0, 5.2), ("a", "backward", 0.01, 1.0)], "holds", "✔"),
    ([("a", "forward", 5.0, 5.2), ("b", "backward", 5.0, 9.0)], "partial", "◐"),
    ([("a", "forward", 5.0, 2.0), ("b", "backward", 0.01, 3.0)], "fails", "✘"),
    ([("a", "forward", 5.0, 5.2), ("b", "backward", 5.0, 9.0), ("c", "forward", 0.01, 3.0)], "fails", "✘"),  # 1 of 3
    ([("a", "forward", 0.01, 1.0), ("b", "backward", 1e-15, 1.1)], "unresolved", "?"),
])
def test_verdict_marks(rows, outcome, mark):
    v = MS.prediction_verdict(claim, _cases(rows), "p")
    assert (v.outcome, v.mark) == (outcome, mark)
    assert "forward and backward" in v.rule and f"{AGREEMENT_BAND[0]:g}–{AGREEMENT_BAND[1]:g}" in v.rule
    assert all(f"{m} {p}: predicted" in v.evidence for m, p, _, _ in rows)  # every case is in the evidence
    assert "(holds" not in v.rule  # the share rule is the book's, stated once (fbsgd.book.verdicts)


def test_key_number_is_the_visible_ratio_farthest_from_one_on_either_pass():
    v = MS.prediction_verdict(claim, _cases([("a", "forward", 5.0, 5.5), ("b", "backward", 2.0, 1.0),
                                             ("c", "backward", 1e-9, 1.0)]), "p")
    assert v.key_number == pytest.approx(0.5)  # |log 0.5| > |log 1.1|; the invisible ratio 1e9 does not count
    assert "visible" in v.key_label and "both passes" in v.key_label
    none = MS.prediction_verdict(claim, _cases([("a", "forward", 0.1, 1.0)]), "p")
    assert none.key_number is None and none.key_label == "no visible prediction"


def test_invisible_text_names_the_hidden_predictions_and_the_spread():
    text = MS.invisible_text(_cases([("a", "forward", 5.0, 5.5), ("b nearest", "backward", 2.5e-5, 1.0)],
                                    sgd=(0.95, 1.25), gamma=0.003))
    assert "below the top of standard SGD's seed range at γ = 0.003, 1.2" in text
    assert "b nearest backward (2.5e-05)" in text and "a forward" not in text
    assert f"{RECOVERY_FACTOR:g}× standard SGD's" in text
    assert MS.invisible_text(_cases([("a", "forward", 5.0, 5.5)])).startswith("Every prediction lies above")


# -- the figure ---------------------------------------------------------------------------------------


def test_figure_draws_every_curves_prediction_on_or_below_the_axis():
    table = _sweep([NEAREST, STOCHASTIC], norm=lambda cfg: 1e-3 * (1 + cfg.seed) * cfg.gamma ** 0.5)
    slopes = MS.mechanism_slopes(table).assign(predicted_limit=[0.0, 2e-3, 5e-4, 3e-4, 1e-15])
    fig = mechanism_panels(table, slopes)
    try:
        for ax, place in zip(fig.axes, ("forward", "backward")):
            want = slopes[slopes.place == place]
            on = [ln for ln in ax.lines if ln.get_marker() == "<" and len(ln.get_xdata()) == 1]
            off = [ln for ln in ax.lines if ln.get_marker() == "v" and len(ln.get_xdata()) == 1]
            assert len(on) + len(off) == len(want)  # one mark per curve of the panel
            assert sorted(float(ln.get_ydata()[0]) for ln in on) == sorted(want.predicted_limit[want.predicted_limit > 1e-10])
            assert len(off) == int((want.predicted_limit < 1e-10).sum())
            assert all(ln.get_ydata()[0] < table.stable_grad_norm.min() for ln in off)  # below every measured norm
    finally:
        plt.close(fig)


# -- one prediction at the book's problem against an independent estimate -----------------------------


def test_backward_e4m3_nearest_at_the_books_problem_meets_noise_free_descent():
    """The chapter's prediction for float8_e4m3fn rounding to nearest of the backward message, on the
    book's problem (RunConfig defaults: d = 10, M = 2,000, non-convex, ρ = 0.001), against full-batch
    gradient descent with that rounding and no sampling noise, through the one training loop
    (:func:`fbsgd.optimizers.train` with the perturbed passes), started at the minimizer of f so that a
    short run settles: at a small step the iterates chatter where the rounded gradient changes sign,
    and ‖∇f‖ averaged over the last quarter is the small-step floor, computed without any conditional law."""
    p = PT.Round("float8_e4m3fn", "nearest")
    template = RunConfig()
    slopes = pd.DataFrame([dict(mechanism=p.label, place="backward", gamma_min=0.003, norm_at_gamma_min=1.0)])
    predicted = MS.attach_predictions(slopes, [p], template).predicted_limit.iloc[0]

    cfg = RunConfig(backward=p)
    problem = cfg.problem()
    gamma, T = 0.03, 6000
    norms = []
    train(PassGradient(problem.net, cfg.plan()), problem.minimize(), SGD(gamma), T, problem.data,
          regularizer_grad=lambda w: problem.rho * problem.regularizer.gradient(w),
          callback=lambda t, w, g, step: norms.append(np.linalg.norm(problem.gradient(w))))
    reference = float(np.mean(norms[-T // 4:]))
    assert reference > 1e-4  # a floor, far above what the minimizer gives
    assert predicted == pytest.approx(reference, rel=0.10)
