"""The forward-gradient chapter's glued values, table views, section verdicts and models, on small inputs
whose answer is known."""
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.forward_gradients import study as FM
from fbsgd.studies.forward_gradients import figures as fg_plots
from fbsgd.studies.forward_gradients import problems as FP
from fbsgd.studies.forward_gradients import verdicts as FV
from fbsgd.passes import passes
from fbsgd.problems import LogisticRegression
from fbsgd.book.verdicts import Verdict, Ledger

CHAPTER = Path(__file__).resolve().parents[3] / "chapters" / "forward_gradients.ipynb"

PARAMS = dict(beale_point=[1.5, -0.1], mc_repeats=200, var_draws=400, mlp_hidden=32, batch_size=64, n_samples=2000)


def _sgd_table():
    """Two models, two steps each; second-half losses chosen so every ratio is known."""
    rows = []
    for model, lrs, bp, fg in (("logistic regression", (0.3, 0.03), (2.0, 0.5), (8.0, 6.0)),
                               ("perceptron", (0.1, 0.01), (0.2, 0.4), (0.3, 0.5))):
        for lr, b, f in zip(lrs, bp, fg):
            rows.append(dict(model=model, lr=lr, estimator="backprop", second_half=b))
            rows.append(dict(model=model, lr=lr, estimator="forward gradient", second_half=f))
    return pd.DataFrame(rows)


def test_setup_values_quote_the_parameters():
    v = FV.setup_values(PARAMS)
    assert v == {"fg-mc-repeats": 200, "fg-var-draws": 400, "fg-hidden": 32, "fg-batch": 64,
                 "fg-beale-point": "(1.5, −0.1)", "fg-n-samples": 2000}
    assert FV.setup_values({**PARAMS, "beale_point": [-2.0, 3.25]})["fg-beale-point"] == "(−2, 3.25)"


def test_small_step_values_take_each_models_smallest_step():
    v = FV.small_step_values(_sgd_table())
    assert v == pytest.approx({"fg-small-lr-logistic": 0.03, "fg-small-bp-logistic": 0.5, "fg-small-fg-logistic": 6.0,
                               "fg-small-ratio-logistic": 12.0, "fg-small-lr-perceptron": 0.01,
                               "fg-small-bp-perceptron": 0.4, "fg-small-fg-perceptron": 0.5,
                               "fg-small-ratio-perceptron": 1.25})
    assert all(type(x) is float for x in v.values())


def test_summary_values_cover_every_glue_name_of_the_prose():
    led = Ledger("forward_gradients")
    led.add(Verdict(led.claim("error_rate"), "holds", "r", "e", key_number=-0.5012))
    led.add(Verdict(led.claim("adam_vs_sgd"), "fails", "r", "e"))
    models = {"perceptron": dict(w0=np.zeros(704))}
    v = FV.summary_values(led, PARAMS, models, {"logistic regression": 200, "perceptron": 120}, _sgd_table())
    assert v["fg-mlp-n"] == 704 and type(v["fg-mlp-n"]) is int
    assert v["fg-probe-window"] == (f"the first {FM.PROBE_STEPS} iterations of the logistic regression "
                                    "and all 120 iterations of the perceptron")
    assert v["fg-sum-error-rate"] == "the error falls like K⁻¹ᐟ² (fitted slope −0.501)"
    assert v["fg-sum-adam-vs-sgd"] == "does not hold"
    assert v["fg-small-ratio-logistic"] == pytest.approx(12.0) and v["fg-beale-point"] == "(1.5, −0.1)"
    # every {glue:text}/{glue:} name in the chapter's markdown that is not a figure comes from summary_values
    # (which also glues the perceptron's two smallest-step losses, unquoted, as the chapter always has)
    prose = "\n".join(c.source for c in nbformat.read(CHAPTER, as_version=4).cells if c.cell_type == "markdown")
    used = {m.split(":")[0] for m in re.findall(r"\{glue(?::text)?\}`([^`]+)`", prose)}
    assert used and used <= set(v)
    assert set(v) - used == {"fg-small-bp-perceptron", "fg-small-fg-perceptron"}


def test_table_views_choose_columns_headers_and_caption():
    mc = pd.DataFrame(dict(K=[1, 10], rms=[2.0, 0.6], closed_form_rms=[2.0, 0.63], z_mse=[0.1, -0.2],
                           grand_mean_error=[0.01, 0.003], grand_mean_rms=[0.01, 0.003], mse=[4.0, 0.4]))
    s = fg_plots.beale_table(mc)
    assert list(s.data.columns) == ["K", "RMS error", "closed form", "z (MSE)", "grand-mean miss", "expected miss"]
    assert s.caption.startswith("Error of an average of K forward gradients on the Beale function")
    var = pd.DataFrame(dict(model="m", n=[2], K=[1], variance=[3.1], variance_se=[0.1], closed_form_variance=[3.0],
                            z=[1.0], draws=[400]))
    assert list(fg_plots.variance_table(var).data.columns) == ["model", "n", "K", "measured", "s.e.", "(n + 1)/K", "z"]
    floors = pd.DataFrame({c: [1.0] for c in ["lr", "predicted_backprop", "predicted_forward", "measured_backprop",
                                               "measured_forward", "predicted_ratio", "measured_ratio", "mu_H"]})
    assert list(fg_plots.floors_table(floors).data.columns) == [
        "γ", "predicted, backprop", "predicted, forward", "mean, backprop", "mean, forward", "predicted ratio",
        "measured ratio"]
    runs = pd.DataFrame(dict(model=["m"], lr=[0.1], estimator=["backprop"], initial=[1.0], final=[0.5],
                             second_half=[0.6], diverged=[0], slowdown=[1.0]))
    sgd, adam = fg_plots.runs_table(runs, "SGD"), fg_plots.runs_table(runs, "Adam")
    assert list(sgd.data.columns) == ["model", "γ", "estimator", "initial", "final", "second half (median)", "diverged"]
    assert list(adam.data.columns) == ["model", "lr", "estimator", "initial", "final", "second half (median)", "diverged"]
    assert sgd.caption == ("SGD: loss at the start, at the end and over the second half, medians over seeds "
                           "(all columns: the CSV above)")
    assert adam.caption == sgd.caption.replace("SGD:", "Adam:")


def _mc():
    K = np.array([1, 10, 100, 1000])
    return pd.DataFrame(dict(K=K, rms=2.0 * K.astype(float) ** -0.5, repeats=100, z_mse=[0.1, -1.0, 5.0, 0.5],
                             grand_mean_ratio=[1.0, 2.0, 3.1, 0.1], grand_mean_error=0.01 * np.ones(4)))


def _adam(model="perceptron"):
    rows = []
    for lr, fp, bp in ((0.01, 0.8, 10.0), (0.1, 0.7, 5.0)):
        for est, prog in (("forward gradient", fp), ("backprop", bp)):
            rows.append(dict(model=model, lr=lr, estimator=est, initial=0.7, final=0.6 if est != "backprop" else 0.4,
                             second_half=0.6, diverged=0, slowdown=8.0, early_progress_per_lr=prog,
                             early_step_length_per_lr=7.0, n=704, l1_over_l2_at_start=15.0,
                             predicted_fg_step_length_per_lr=6.2))
    return pd.DataFrame(rows)


def test_section_verdicts_are_the_single_rules_in_order():
    led = Ledger("forward_gradients")
    u = np.array([3.0, 4.0])
    vs = FV.judge_beale(led, _mc(), u)
    assert [v.claim.id for v in vs] == ["forward_gradients.error_rate", "forward_gradients.error_size",
                                        "forward_gradients.unbiased"]
    assert [v.outcome for v in vs] == ["holds", "partial", "partial"]  # z = 5 at one K; a miss of 3.1 at one K
    assert [v.claim.id for v in led.verdicts] == [v.claim.id for v in vs]
    n, c = 10, np.array([0.5, 1.5])
    gamma = 2 * c / (n + 2)
    cf = 1 - 2 * gamma + gamma**2 * (n + 2)
    stab = pd.DataFrame(dict(n=n, c=c, rho=cf, rho_se=1e-4, closed_form_rho=cf, z=0.0, ratios=100))
    var = pd.DataFrame(dict(n=[2, 8], K=[1, 1], variance=[3.0, 9.0], closed_form_variance=[3.0, 9.0], z=[0.5, 5.0]))
    vs = FV.judge_variance_section(led, var, stab)
    assert [v.claim.id.split(".")[1] for v in vs] == ["variance", "contraction_factor", "contraction_threshold"]
    assert [v.outcome for v in vs] == ["partial", "holds", "holds"]
    vs = FV.judge_adam_section(led, _adam(), _adam(), mlp_steps=120)
    assert [v.claim.id.split(".")[1] for v in vs] == ["adam_slowdown", "adam_vs_sgd", "adam_mechanism"]
    assert vs[0].outcome == "holds" and vs[2].outcome == "holds"
    assert "over the first 120 iterations" in vs[2].evidence  # the probe covers all of a short run
    long = FV.judge_adam_section(Ledger("forward_gradients"), _adam(), _adam(), mlp_steps=5000)
    assert f"over the first {FM.PROBE_STEPS} iterations" in long[2].evidence


def test_sgd_section_verdicts():
    led = Ledger("forward_gradients")
    sgd = _adam().assign(slowdown=[1.0, 1.0, 8.0, 8.0])
    f = pd.DataFrame(dict(n=10, mu_H=0.05, lr=[0.1, 1.0], predicted_backprop=[1.0, 2.0], predicted_forward=[12.0, 30.0],
                          measured_backprop=[1.0, 2.0], measured_forward=[12.5, 31.0], relaxation_times=[1, 2]))
    f["measured_ratio"] = f.measured_forward / f.measured_backprop
    f["predicted_ratio"] = f.predicted_forward / f.predicted_backprop
    vs = FV.judge_sgd_section(led, sgd, f)
    assert [v.claim.id.split(".")[1] for v in vs] == ["sgd_trains", "noise_floor", "perceptron_steps"]
    assert [v.outcome for v in vs] == ["holds", "unresolved", "holds"]


def test_training_models_build_the_two_models_from_the_parameters():
    models, logreg, w_opt = FP.training_models(n_samples=60, mlp_inputs=3, mlp_hidden=4, data_seed=7)
    assert list(models) == ["logistic regression", "perceptron"]
    lr, mlp = models["logistic regression"], models["perceptron"]
    ref = LogisticRegression.generate(d=10, M=60, rho=0.001, regularizer="nonconvex", data_seed=7)
    assert np.array_equal(logreg.data, ref.data) and logreg.d == 10
    assert np.array_equal(lr["w0"], np.zeros(10)) and lr["net"] is logreg.net and lr["data"] is logreg.data
    assert lr["metric"](w_opt) == pytest.approx(0.0, abs=1e-15)
    assert lr["metric"](lr["w0"]) == pytest.approx(logreg.loss(np.zeros(10)) - logreg.loss(w_opt))
    assert lr["metric"](lr["w0"]) > 0
    w = np.linspace(-1, 1, 10)
    assert np.allclose(lr["regularizer_grad"](w), 0.001 * logreg.regularizer.gradient(w))
    full = passes(logreg.net, logreg.data, w_opt).gradient() + lr["regularizer_grad"](w_opt)
    assert np.linalg.norm(full) < 1e-6  # w_opt minimizes the regularized loss
    assert mlp["w0"].size == mlp["net"].weight_size == (3 + 1) * 4 + 4
    assert np.array_equal(mlp["w0"], mlp["net"].init_weight(np.random.default_rng(7)))
    assert np.array_equal(mlp["data"], FP.teacher_classification(M=60, d=3, data_seed=7))
    assert "metric" not in mlp and "regularizer_grad" not in mlp
