"""fbsgd.studies.real_mechanisms.mechanisms and fbsgd.studies.real_mechanisms.study on synthetic draws and tables whose answer is known."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.real_mechanisms import study as MS
from fbsgd.studies.real_mechanisms import mechanisms as MX
from fbsgd import perturbations as PT
from fbsgd.book.verdicts import Claim


def claim(name):
    return Claim(id=f"t.{name}", chapter="t", ref="-", source="book", text=name)


X = np.linspace(0.5, 2.0, 400).reshape(4, 100)


def test_deterministic_error_has_conditional_bias_one():
    d = np.broadcast_to((0.01 * X)[:, None, :], (4, 8, 100))  # δ = 0.01 x at every draw
    st = MX.moment_statistics(d, X)
    assert st["conditional_bias"] == pytest.approx(1.0)
    assert MX.classify(st)["zero_mean"] == "biased"
    assert st["max_relative"] == pytest.approx(0.01) and MX.classify(st)["relative"]


def test_symmetric_noise_is_zero_mean_given_input():
    g = np.random.default_rng(0)
    d = g.choice([-1e-3, 1e-3], size=(4, 64, 100))
    st = MX.moment_statistics(d, X)
    assert abs(st["conditional_bias"]) < 0.02
    assert MX.classify(st) == dict(zero_mean="given the input", bounded=True, relative=True)


def test_deterministic_but_centred_is_on_average_only():
    sign = np.where(np.arange(100) % 2 == 0, 1.0, -1.0)
    d = np.broadcast_to((1e-3 * sign)[None, None, :], (4, 8, 100))
    assert MX.classify(MX.moment_statistics(d, X))["zero_mean"] == "on average only"


def test_spike_is_unbounded_and_rare_spikes_untellable():
    d = np.zeros((4, 8, 100))
    d[0, 0, 0] = 1e30
    st = MX.moment_statistics(d, X)
    c = MX.classify(st)
    assert not c["bounded"] and not c["relative"] and c["zero_mean"] == "too rare to tell"


def test_real_rounding_classes():
    x = np.linspace(0.3, 3.0, 200).reshape(2, 100, 1)
    tab = MX.moment_table([PT.Round("float8_e4m3fn", "nearest"), PT.Round("float8_e4m3fn", "stochastic")], {"m": x}, 32)
    assert list(tab.zero_mean.iloc[1:]) == ["given the input"]
    assert tab.conditional_bias.iloc[0] == pytest.approx(1.0)


def _moments(classes):
    return pd.DataFrame([dict(kind="Round", mechanism=m, message=msg, zero_mean=c, conditional_bias=1.0 if c != "given the input" else 0.0,
                              mean_z=0.0, max_over_range=0.1, nonfinite_fraction=0.0, bounded=True)
                         for (m, msg), c in classes.items()])


def test_zero_mean_verdict_holds_partial_fails():
    ok = _moments({("a nearest", "x"): "given the input", ("b nearest", "x"): "given the input"})
    mixed = _moments({("a nearest", "x"): "given the input", ("b nearest", "x"): "on average only"})
    bad = _moments({("a nearest", "x"): "biased", ("b nearest", "x"): "on average only"})
    assert [MX.zero_mean_verdict(claim, t, "z", ["Round"]).outcome for t in (ok, mixed, bad)] == ["holds", "partial", "fails"]
    assert MX.biased_verdict(claim, bad, "b", ["Round"]).outcome == "holds"


def _slopes(rows):
    return pd.DataFrame([dict(mechanism=m, place=p, slope=s, slope_se=0.01, norm_at_gamma_min=n, predicted_limit=pr,
                              gamma_min=0.003, level=m) for m, p, s, n, pr in rows])


def test_asymmetry_verdict_outcomes():
    base = ("sgd", "baseline", 0.5, 1.0, 0.0)
    fwd = _slopes([base, ("a", "forward", 0, 3.0, 0), ("a", "backward", 0, 1.0, 0)])
    bwd = _slopes([base, ("a", "forward", 0, 1.0, 0), ("a", "backward", 0, 3.0, 0)])
    tie = _slopes([base, ("a", "forward", 0, 1.1, 0), ("a", "backward", 0, 1.0, 0)])
    vs = [MS.asymmetry_verdict(claim, MS.asymmetry_table(t), "a") for t in (fwd, bwd, tie)]
    assert [v.outcome for v in vs] == ["holds", "fails", "unresolved"]
    assert [v.key_number for v in vs] == [1.0, 0.0, None]  # the share that decides the mark, not the largest ratio
    both = _slopes([base, ("a", "forward", 0, 3.0, 0), ("a", "backward", 0, 1.0, 0),
                    ("b", "forward", 0, 1.0, 0), ("b", "backward", 0, 3.0, 0)])
    v = MS.asymmetry_verdict(claim, MS.asymmetry_table(both), "a")
    assert v.outcome == "partial" and v.key_number == 0.5


def test_backward_no_floor_verdict():
    m = _moments({("s stochastic", "backward σ(z)"): "given the input", ("t stochastic", "backward σ(z)"): "given the input"})
    t = _slopes([("sgd", "baseline", 0.5, 1, 0), ("s stochastic", "backward", 0.5, 1, 0), ("t stochastic", "backward", 0.0, 1, 0)])
    assert MS.backward_no_floor_verdict(claim, t, m, "b").outcome == "partial"


def test_bounded_verdict_prints_infinity_in_words():
    t = _moments({("BitFlip exponent 0.001", "x"): "biased"}).assign(kind="BitFlip", max_over_range=np.inf,
                                                                       nonfinite_fraction=0.01, bounded=False)
    v = MX.bounded_verdict(claim, t, "e", ["BitFlip"], field="exponent")
    assert "∞ (non-finite entries)" in v.evidence and "inf" not in v.evidence.replace("non-finite", "")
    assert v.key_number is None and "∞" in v.key_label


def test_flip_range_text_says_whether_flips_stay_in_range():
    t = _moments({("BitFlip exponent 0.001", "x"): "biased"}).assign(kind="BitFlip", max_over_range=np.inf,
                                                                       nonfinite_fraction=0.01, bounded=False)
    text = MX.flip_range_text(t)
    assert text.startswith("exponent flips that are not bounded (non-finite entries)") and "beyond its hypotheses" in text
    t = t.assign(max_over_range=0.5, nonfinite_fraction=0.0, bounded=True)
    assert "within its hypotheses" in MX.flip_range_text(t)
    t = t.assign(max_over_range=40.0, bounded=False)
    assert "entries up to 40 times the message's range" in MX.flip_range_text(t)


def test_unchanged_text_lists_mechanisms_within_the_recovery_factor_on_both_messages():
    from fbsgd.studies.section7.verdicts import RECOVERY_FACTOR

    rows = []
    for g in (0.1, 1.0):
        rows.append(dict(figure="standard SGD", panel="baseline", gamma=g, stable_grad_norm=1.0, diverged=False))
        for place in ("forward", "backward"):
            rows.append(dict(figure="a", panel=place, gamma=g, stable_grad_norm=1.1, diverged=False))
            rows.append(dict(figure="b", panel=place, gamma=g,
                             stable_grad_norm=3 * RECOVERY_FACTOR if place == "forward" else 1.0, diverged=False))
            rows.append(dict(figure="c", panel=place, gamma=g, stable_grad_norm=1.0, diverged=False))
    t = pd.DataFrame(rows)
    assert MS.unchanged_text(t) == "a and c"
    t.loc[(t.figure == "c") & (t.gamma == 1.0) & (t.panel == "forward"), "diverged"] = True
    assert MS.unchanged_text(t) == "a"
    assert MS.unchanged_text(t[t.figure.isin(["standard SGD", "b"])]) == "none of the mechanisms"


def test_training_messages_are_the_messages_of_clean_sgd_at_the_checkpoints():
    """z = −a w_t at the checkpoints, with w_t from the update w ← w − γ(∇f(w) + ξ_t) written out here."""
    from fbsgd import rng
    from fbsgd.engine.sweeps import RunConfig

    problem = RunConfig(data_seed=0, M=200).problem()
    gamma, T, std, seed = 0.1, 60, 1e-3, 3
    steps, z, s = MX.training_messages(problem, gamma, T, 4, noise_std=std, seed=seed)
    key = rng.derive_key("fbsgd.mechanisms.messages.xi", seed)
    w, want = np.zeros(problem.d), {}
    for t in range(T):
        want[t] = -problem.signed_features @ w
        w = w - gamma * (problem.gradient(w) + rng.normal(key, t, (problem.d,), std))
    assert steps.tolist() == [30, 39, 49, 59]
    for k, t in enumerate(steps):
        np.testing.assert_allclose(z[k, :, 0], want[t], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s, 1 / (1 + np.exp(-z)), rtol=1e-12)
