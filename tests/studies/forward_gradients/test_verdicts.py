"""The forward-gradient verdict rules and studies on synthetic inputs whose outcome is known."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.forward_gradients import study as FM
from fbsgd.studies.forward_gradients import verdicts as FV
from fbsgd.book import verdicts as V


@pytest.fixture
def ledger():
    return V.Ledger("forward_gradients")


def _mc(slope, z, ratio):
    K = np.array([1, 10, 100, 1000])
    rms = 2.0 * K.astype(float) ** slope
    return pd.DataFrame(dict(K=K, rms=rms, repeats=100, z_mse=z, grand_mean_ratio=ratio,
                             grand_mean_error=0.01 * np.ones(4)))


def test_error_rate_and_size(ledger):
    mc = _mc(-0.5, [0.1, -1.0, 2.0, 0.5], [1.0] * 4)
    assert FV.judge_error_rate(ledger, mc).outcome == "holds"
    assert FV.judge_error_rate(ledger, _mc(-0.45, [0] * 4, [1] * 4)).outcome == "fails"
    u = np.array([3.0, 4.0])
    assert FV.judge_error_size(ledger, mc, u).outcome == "holds"
    assert FV.judge_error_size(ledger, _mc(-0.5, [0, 5, 0, 0], [1] * 4), u).outcome == "partial"
    assert FV.judge_error_size(ledger, _mc(-0.5, [9, 5, -7, 6], [1] * 4), u).outcome == "fails"
    assert FV.judge_unbiased(ledger, _mc(-0.5, [0] * 4, [1, 2, 2.9, 0.1]), u).outcome == "holds"
    assert FV.judge_unbiased(ledger, _mc(-0.5, [0] * 4, [1, 2, 3.1, 0.1]), u).outcome == "partial"


def test_variance_and_contraction(ledger):
    var = pd.DataFrame(dict(n=[2, 8, 8], K=[1, 1, 4], variance=[3.0, 9.0, 2.25], closed_form_variance=[3.0, 9.0, 2.25], z=[0.5, -1, 3]))
    assert FV.judge_variance(ledger, var).outcome == "holds"
    assert FV.judge_variance(ledger, var.assign(z=[0.5, 5, 3])).outcome == "partial"
    # factors: closed form 1 − 2γ + γ²(n+2) with c = γ(n+2)/2, n = 10
    n, c = 10, np.array([0.5, 0.9, 1.1, 1.5])
    gamma = 2 * c / (n + 2)
    cf = 1 - 2 * gamma + gamma**2 * (n + 2)
    stab = pd.DataFrame(dict(n=n, c=c, rho=cf, rho_se=1e-4, closed_form_rho=cf, z=0.0, ratios=100))
    assert FV.judge_contraction_factor(ledger, stab).outcome == "holds"
    assert FV.judge_contraction_threshold(ledger, stab).outcome == "holds"
    wrong = stab.assign(rho=np.where(c > 1, 0.99, cf))  # growth predicted, contraction measured
    assert FV.judge_contraction_threshold(ledger, wrong).outcome == "fails"
    assert FV.judge_contraction_threshold(ledger, stab.assign(rho_se=1.0)).outcome == "unresolved"


def _summary(model="perceptron", slow=(1.0, 8.0), fg_final=(0.6, 0.65), bp_final=(0.4, 0.45), prog=(0.8, 0.7), bprog=(10, 5)):
    rows = []
    for i, lr in enumerate((0.01, 0.1)):
        rows.append(dict(model=model, lr=lr, estimator="forward gradient", initial=0.7, final=fg_final[i], second_half=fg_final[i],
                         diverged=0, slowdown=slow[i], early_progress_per_lr=prog[i], early_step_length_per_lr=7.0, n=704,
                         l1_over_l2_at_start=15.0, predicted_fg_step_length_per_lr=6.2))
        rows.append(dict(model=model, lr=lr, estimator="backprop", initial=0.7, final=bp_final[i], second_half=bp_final[i],
                         diverged=0, slowdown=slow[i], early_progress_per_lr=bprog[i], early_step_length_per_lr=1.0, n=704,
                         l1_over_l2_at_start=15.0, predicted_fg_step_length_per_lr=6.2))
    return pd.DataFrame(rows)


def test_training_verdicts(ledger):
    t = _summary()
    assert FV.judge_sgd_trains(ledger, t).outcome == "holds"
    t2 = t.copy()
    t2.loc[(t2.estimator == "forward gradient") & (t2.lr == 0.1), "second_half"] = 0.9
    assert FV.judge_sgd_trains(ledger, t2).outcome == "partial"
    assert FV.judge_perceptron_steps(ledger, t).outcome == "holds"
    assert FV.judge_perceptron_steps(ledger, _summary(slow=(8.0, 1.0))).outcome == "fails"
    assert FV.judge_adam_slowdown(ledger, _summary(slow=(6, 20)), 100).outcome == "holds"
    assert FV.judge_adam_slowdown(ledger, _summary(slow=(3, 20)), 100).outcome == "partial"
    assert FV.judge_adam_slowdown(ledger, _summary(slow=(3, 2)), 100).outcome == "fails"


def test_adam_vs_sgd_a_tie_is_a_tie_and_not_worse(ledger):
    sgd = _summary(fg_final=(0.4219, 0.5))
    tie = FV.judge_adam_vs_sgd(ledger, _summary(fg_final=(0.4208, 0.5)), sgd)  # the paper-scale numbers of issue 26
    assert tie.outcome == "fails" and "a tie" in tie.evidence and tie.key_number == pytest.approx(-0.0011)
    assert tie.threshold.startswith("≥ 0.02")
    assert FV.judge_adam_vs_sgd(ledger, _summary(fg_final=(0.4219 + 0.019, 0.5)), sgd).outcome == "fails"  # still a tie
    assert FV.judge_adam_vs_sgd(ledger, _summary(fg_final=(0.4219 + 0.021, 0.5)), sgd).outcome == "holds"
    sgd = _summary(fg_final=(0.42, 0.5))
    assert FV.judge_adam_vs_sgd(ledger, _summary(fg_final=(0.50, 0.6)), sgd).outcome == "holds"
    assert FV.judge_adam_vs_sgd(ledger, _summary(fg_final=(0.30, 0.6)), sgd).outcome == "fails"


def test_adam_mechanism(ledger):
    sgd = _summary()
    assert FV.judge_adam_mechanism(ledger, _summary(), sgd).outcome == "holds"
    assert FV.judge_adam_mechanism(ledger, _summary(prog=(0.8, 3.0)), sgd).outcome == "partial"
    assert FV.judge_adam_mechanism(ledger, _summary(prog=(3.0, 3.0)), sgd).outcome == "fails"


def test_noise_floor(ledger):
    n = 10
    base = dict(n=n, mu_H=0.05, predicted_backprop=[1.0, 2.0], predicted_forward=[12.0, 30.0], lr=[0.1, 1.0])
    f = pd.DataFrame(dict(**base, measured_backprop=[1.0, 2.0], measured_forward=[12.5, 31.0], relaxation_times=[5, 50]))
    f["measured_ratio"] = f.measured_forward / f.measured_backprop
    f["predicted_ratio"] = f.predicted_forward / f.predicted_backprop
    assert FV.judge_noise_floor(ledger, f).outcome == "holds"
    g = f.assign(measured_forward=[30.0, 31.0])
    g["measured_ratio"] = g.measured_forward / g.measured_backprop
    assert FV.judge_noise_floor(ledger, g).outcome == "fails"
    assert FV.judge_noise_floor(ledger, f.assign(relaxation_times=[1, 2])).outcome == "unresolved"


def test_stability_study_matches_closed_form():
    stab = FM.stability_study([4], [0.5, 1.5], 60, [0, 1])
    assert np.all(np.abs(stab.z) < 5)
    assert np.allclose(stab.closed_form_rho, 1 - 2 * stab.gamma + stab.gamma**2 * 6)


def test_summarize_runs_reads_the_slowdown():
    # backprop halves the loss every 10 iterations; the forward gradient every 20: slowdown 2
    t = np.arange(0, 101, 10)
    rows = []
    for est, rate in (("backprop", 10), ("forward gradient", 20)):
        for s in (0, 1):
            rows.append(pd.DataFrame(dict(model="m", lr=0.1, estimator=est, seed=s, t=t, loss=0.5 ** (t / rate))))
    curves = pd.concat(rows, ignore_index=True)
    runs = pd.DataFrame([dict(model="m", lr=0.1, estimator=e, seed=s, initial=1.0, final=0.5, second_half=0.6, diverged=False,
                              early_progress=0.1, early_step_length=0.2) for e in ("backprop", "forward gradient") for s in (0, 1)])
    tab = FM.summarize_runs(runs, curves)
    assert np.allclose(tab.slowdown, 2.0, rtol=0.02)
    assert np.allclose(tab.early_progress_per_lr, 1.0)


def test_unbiased_evidence_pairs_the_smallest_miss_with_its_own_draws():
    from fbsgd.studies.forward_gradients import verdicts as FV
    from fbsgd.book.verdicts import Verdict, Ledger
    mc = pd.DataFrame(dict(K=[1, 50, 100], repeats=[1000, 2000, 200000], grand_mean_ratio=[0.5, 0.4, 0.6],
                           grand_mean_error=[3e-3, 8e-4, 1.1e-3]))
    v = FV.judge_unbiased(Ledger("forward_gradients"), mc, np.array([1.0, 2.0]))
    assert "smallest miss 8.00e-04 at K = 50, with 100,000 draws" in v.evidence
    assert "20,000,000 at K = 100, the miss is 1.10e-03" in v.evidence
    assert FV._set([4, 1, 1.0]) == "{1, 4}"


def test_estimator_ratios_pair_the_two_estimators():
    t = pd.DataFrame(dict(model=["b", "b", "a", "a", "a", "a"], lr=[0.1, 0.1, 0.3, 0.3, 0.03, 0.03],
                          estimator=["forward gradient", "backprop"] * 3,
                          second_half=[2.0, 1.0, 6.0, 2.0, 0.00172, 0.000144]))
    r = FM.estimator_ratios(t)
    assert list(zip(r.model, r.lr)) == [("a", 0.03), ("a", 0.3), ("b", 0.1)]
    assert r.ratio.tolist() == pytest.approx([0.00172 / 0.000144, 3.0, 2.0])
    assert r.backprop.iloc[0] == 0.000144 and r.forward.iloc[0] == 0.00172


def test_summary_texts_follow_the_outcomes():
    from fbsgd.studies.forward_gradients import study as FM
    from fbsgd.book.verdicts import Ledger, Verdict

    led = Ledger("forward_gradients")
    led.add(Verdict(led.claim("error_rate"), "holds", "r", "e", key_number=-0.5012))
    led.add(Verdict(led.claim("noise_floor"), "unresolved", "r", "e"))
    led.add(Verdict(led.claim("sgd_trains"), "partial", "r", "e", key_number=3.0))
    led.add(Verdict(led.claim("adam_slowdown"), "fails", "r", "e", key_number=2.5))
    led.add(Verdict(led.claim("adam_vs_sgd"), "fails", "r", "e", key_number=-0.1))
    t = FV.summary_texts(led)
    assert t["error-rate"] == "the error falls like K⁻¹ᐟ² (fitted slope −0.501)"
    assert "not tested" in t["floor"]
    assert t["trains"] == "trains in 3 of the (model, γ) configurations only"
    assert t["adam"].startswith("is not much slower") and "×2.5" in t["adam"]
    assert t["adam-vs-sgd"] == "does not hold"
    assert t["variance"].startswith("whether") and t["variance"].endswith("was not judged")
    assert FM.probe_window({"a": 500, "b": 300}) == f"the first {FM.PROBE_STEPS} iterations"
    assert FM.probe_window({"a": 500, "b": 120}) == (f"the first {FM.PROBE_STEPS} iterations of the a "
                                                     "and all 120 iterations of the b")
