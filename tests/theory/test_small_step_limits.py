"""The γ → 0 limit for any plan, from the perturbations' conditional laws given their inputs
(fbsgd.theory.small_step_limits): the general method against the closed forms for uniform noise
(to 1e-8 relative), and the averaged direction against direct computations with ml_dtypes'
rounding, enumeration and the duty cycles of the schedules."""
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import pytest
from scipy.special import expit

from fbsgd import perturbations as P
from fbsgd import rng
from fbsgd.problems import LogisticRegression
from fbsgd.theory import small_step_limits as L

ML = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16, "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
      "float8_e5m2": ml_dtypes.float8_e5m2}


@pytest.fixture(scope="module")
def nonconvex():
    return LogisticRegression.generate(d=10, M=2000, rho=0.001, regularizer="nonconvex")


@pytest.fixture(scope="module")
def l2():
    return LogisticRegression.generate(d=10, M=2000, rho=0.1, regularizer="l2")


def _w(prob, seed=0):
    return prob.minimize() + 0.3 * np.random.default_rng(seed).standard_normal(prob.d)


def _fl(v, fmt):
    return np.asarray(v, dtype=float).astype(ML[fmt]).astype(float)


# -------------------------------------------------------------------------------------------------
# the general method reproduces the closed forms (uniform noise, intermittent or not)
# -------------------------------------------------------------------------------------------------

PLANS = {
    "forward zero-mean": P.Plan(forward={1: P.zero_mean_uniform(10.0, 10)}),
    "forward biased every 4": P.Plan(forward={1: P.every(4, P.nonzero_mean_uniform(10.0, 10), offset=1)}),
    "forward shared": P.Plan(forward={1: P.zero_mean_uniform(3.0, 10, per_sample=False)}),
    "backward biased every 3": P.Plan(backward={2: P.every(3, P.nonzero_mean_uniform(0.5, 10))}),
    "both, intervals 2 and 3": P.Plan(forward={1: P.every(2, P.UniformNoise(-0.3, 0.8))},
                                      backward={2: P.every(3, P.UniformNoise(0.0, 0.1), offset=1)}),
    "both every step": P.Plan(forward={1: P.UniformNoise(-1.0, 1.0)}, backward={2: P.UniformNoise(-0.05, 0.02)}),
}


@pytest.mark.parametrize("name", list(PLANS))
@pytest.mark.parametrize("problem", ["nonconvex", "l2"])
def test_the_general_method_reproduces_the_closed_forms_to_1e_8(name, problem, request):
    prob = request.getfixturevalue(problem)
    plan = PLANS[name]
    closed = L.small_step_limit(prob, plan)
    general = L.small_step_limit(prob, plan, method="conditional")
    assert closed["method"] == "closed_form" and general["method"] == "conditional"
    assert not closed["escapes"] and not general["escapes"]
    assert general["plateau"] == pytest.approx(closed["plateau"], rel=1e-8)
    np.testing.assert_allclose(general["w"], closed["w"], rtol=1e-8, atol=1e-8 * np.abs(closed["w"]).max())


def test_zero_mean_backward_noise_has_no_plateau_either_way(nonconvex):
    plan = P.Plan(backward={2: P.zero_mean_uniform(2.0, 10)})
    for method in ("closed_form", "conditional"):
        r = L.small_step_limit(nonconvex, plan, method=method)
        assert r["plateau"] < 1e-12 and not r["escapes"]


def test_the_general_method_reproduces_an_escape(nonconvex):
    plan = P.Plan(backward={2: P.nonzero_mean_uniform(1.0, 10)})  # the averaged drift has no zero here
    closed = L.small_step_limit(nonconvex, plan, flow_steps=4000)
    general = L.small_step_limit(nonconvex, plan, flow_steps=4000, method="conditional")
    assert closed["escapes"] and general["escapes"]
    assert general["plateau"] == pytest.approx(closed["plateau"], rel=1e-8)


def test_the_averaged_bias_is_the_closed_form(nonconvex):
    w = _w(nonconvex)
    plan = PLANS["both, intervals 2 and 3"]
    np.testing.assert_allclose(L.conditional_averaged_bias(nonconvex, plan, w), L.averaged_bias(nonconvex, plan, w)[0],
                               rtol=1e-12, atol=1e-16)


def test_auto_keeps_the_closed_form_for_uniform_noise_and_uses_the_laws_otherwise(l2):
    assert L.small_step_limit(l2, PLANS["forward zero-mean"])["method"] == "closed_form"
    assert L.small_step_limit(l2, P.Plan(backward={2: P.Round("bfloat16")}))["method"] == "conditional"


# -------------------------------------------------------------------------------------------------
# the averaged direction of real mechanisms, against direct computations
# -------------------------------------------------------------------------------------------------


def _direct(prob, w, v):
    """D(w) = −(1/M) Σ a_l v_l + ρ∇R(w) for the expected backward messages v."""
    return -(prob.signed_features.T @ v) / prob.M + prob.rho * prob.regularizer.gradient(w)


@pytest.mark.parametrize("fmt", list(ML))
def test_backward_rounding_to_nearest_is_the_rounded_sigmoid(nonconvex, fmt):
    w = _w(nonconvex)
    s = expit(-nonconvex.signed_features @ w)
    D = L.averaged_direction(nonconvex, P.Plan(backward={2: P.Round(fmt)}), w)
    np.testing.assert_allclose(D, _direct(nonconvex, w, _fl(s, fmt)), rtol=1e-13, atol=1e-17)


def _neighbours(v, fmt):
    """(lo, hi) around |v| with ml_dtypes: the nearest format value and the adjacent one on v's other side."""
    ml = ML[fmt]
    ui = {1: np.uint8, 2: np.uint16}[np.dtype(ml).itemsize]
    a = np.abs(v)
    r = np.abs(_fl(a, fmt))
    bits = r.astype(ml).view(ui).astype(np.int64)
    up = np.clip(bits + 1, 0, None).astype(ui).view(ml).astype(float)
    down = np.clip(bits - 1, 0, None).astype(ui).view(ml).astype(float)
    lo = np.where(r <= a, r, down)
    hi = np.where(r >= a, r, up)
    return lo * np.sign(v), hi * np.sign(v)


@pytest.mark.parametrize("fmt", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_forward_stochastic_rounding_averages_over_the_two_neighbours(nonconvex, fmt):
    w = _w(nonconvex, 1)
    z = -nonconvex.signed_features @ w
    lo, hi = _neighbours(z, fmt)
    p = np.where(hi != lo, (np.abs(z) - np.abs(lo)) / np.where(hi != lo, np.abs(hi) - np.abs(lo), 1.0), 0.0)
    v = (1 - p) * expit(lo) + p * expit(hi)
    D = L.averaged_direction(nonconvex, P.Plan(forward={1: P.Round(fmt, "stochastic")}), w)
    np.testing.assert_allclose(D, _direct(nonconvex, w, v), rtol=1e-12, atol=1e-16)


def test_both_places_compose_exactly(nonconvex):
    w = _w(nonconvex, 2)
    z = -nonconvex.signed_features @ w
    lo, hi = _neighbours(z, "float8_e4m3fn")
    p = np.where(hi != lo, (np.abs(z) - np.abs(lo)) / np.where(hi != lo, np.abs(hi) - np.abs(lo), 1.0), 0.0)
    v = (1 - p) * _fl(expit(lo), "bfloat16") + p * _fl(expit(hi), "bfloat16")
    plan = P.Plan(forward={1: P.Round("float8_e4m3fn", "stochastic")}, backward={2: P.Round("bfloat16")})
    np.testing.assert_allclose(L.averaged_direction(nonconvex, plan, w), _direct(nonconvex, w, v), rtol=1e-12, atol=1e-16)


def test_topk_after_rounding_is_exact(nonconvex):
    w = _w(nonconvex, 3)
    s = expit(_fl(-nonconvex.signed_features @ w, "float8_e5m2"))
    keep = np.argsort(-np.abs(s), kind="stable")[:200]
    v = np.zeros_like(s)
    v[keep] = s[keep]
    plan = P.Plan(forward={1: P.Round("float8_e5m2")}, backward={2: P.TopK(200, scope="batch")})
    np.testing.assert_allclose(L.averaged_direction(nonconvex, plan, w), _direct(nonconvex, w, v), rtol=1e-13, atol=1e-17)


def test_unbiased_backward_mechanisms_leave_no_bias(nonconvex):
    w = _w(nonconvex, 4)
    for p in (P.Round("float8_e4m3fn", "stochastic"), P.RandK(100, scope="batch")):
        b = L.conditional_averaged_bias(nonconvex, P.Plan(backward={2: p}), w)
        assert np.linalg.norm(b) < 1e-15


# -------------------------------------------------------------------------------------------------
# schedules: each acts a fraction of the steps; the joint fraction from the intersection
# -------------------------------------------------------------------------------------------------


def test_duty_fractions():
    u = P.UniformNoise(0.0, 1.0)
    q = L.duty_fractions(P.Plan(forward={1: P.every(2, u)}, backward={2: P.every(3, u)}))
    assert q == pytest.approx(dict(forward=1 / 3, backward=1 / 6, both=1 / 6, none=1 / 3))
    q = L.duty_fractions(P.Plan(forward={1: P.every(2, u, offset=1)}, backward={2: P.every(4, u)}))
    assert q["both"] == 0.0 and q["forward"] == 0.5 and q["backward"] == 0.25
    q = L.duty_fractions(P.Plan(backward={2: P.budget(20, 1000, u)}), horizon=1000)
    assert q["backward"] == 0.02 and q["none"] == 0.98
    with pytest.raises(ValueError, match="horizon"):
        L.duty_fractions(P.Plan(backward={2: P.budget(20, 1000, u)}))


def test_an_intermittent_mechanism_weighs_its_direction_by_its_duty_cycle(nonconvex):
    w = _w(nonconvex, 5)
    r = P.Round("float8_e5m2")
    full = L.averaged_direction(nonconvex, P.Plan(backward={2: r}), w)
    third = L.averaged_direction(nonconvex, P.Plan(backward={2: P.every(3, r, offset=2)}), w)
    np.testing.assert_allclose(third, full / 3 + 2 * nonconvex.gradient(w) / 3, rtol=1e-12, atol=1e-17)
    budget = L.averaged_direction(nonconvex, P.Plan(backward={2: P.budget(50, 1000, r)}), w, horizon=1000)
    np.testing.assert_allclose(budget, 0.05 * full + 0.95 * nonconvex.gradient(w), rtol=1e-12, atol=1e-17)


# -------------------------------------------------------------------------------------------------
# limits of mechanisms without closed forms
# -------------------------------------------------------------------------------------------------


def test_rounding_to_nearest_settles_where_the_averaged_direction_changes_sign(nonconvex):
    plan = P.Plan(backward={2: P.Round("float8_e4m3fn")})
    r = L.small_step_limit(nonconvex, plan)
    assert r["method"] == "conditional" and not r["escapes"]
    D = L.averaged_direction(nonconvex, plan, r["w"])
    assert r["residual"] == pytest.approx(np.linalg.norm(D), rel=1e-12)
    # D is piecewise constant (no exact zero): the residual is small next to the bias it balances
    assert r["residual"] < 0.2 * r["plateau"] and r["plateau"] > 1e3 * np.linalg.norm(nonconvex.gradient(nonconvex.minimize()))


@dataclass(frozen=True)
class AddUniform(P.Perturbation):
    """A user's kind, x + U(0, h), known only through its apply; its declared law lies (zero-mean U(−h/2, h/2))."""

    h: float

    def apply(self, x, key, step):
        return x + rng.uniform(key, step, np.shape(x), 0.0, self.h)

    @property
    def law(self):
        a = self.h / 2
        return P.Law("uniform", True, True, 0.0, a * a / 3, a**4 / 5, bound=a, support=(-a, a))


def test_a_kind_known_only_by_its_apply_is_predicted_by_monte_carlo(l2):
    truth = L.small_step_limit(l2, P.Plan(backward={2: P.UniformNoise(0.0, 0.2)}))["plateau"]
    lying = L.small_step_limit(l2, P.Plan(backward={2: AddUniform(0.2)}))  # auto trusts the declared law
    measured = L.small_step_limit(l2, P.Plan(backward={2: AddUniform(0.2)}), method="conditional", draws=64)
    assert lying["method"] == "closed_form" and lying["plateau"] < 1e-12
    assert measured["plateau"] == pytest.approx(truth, rel=0.02)  # 64 draws of U(0, 0.2) per sample, 2000 samples


def test_refusals():
    prob = LogisticRegression.generate(d=3, M=50)
    with pytest.raises(ValueError, match="method must be one of"):
        L.small_step_limit(prob, P.Plan(), method="exact")
    with pytest.raises(NotImplementedError, match="closed-form limits exist"):
        L.small_step_limit(prob, P.Plan(backward={2: P.Round("bfloat16")}), method="closed_form")
    with pytest.raises(ValueError, match="horizon"):
        L.small_step_limit(prob, P.Plan(backward={2: P.budget(3, 30, P.Round("bfloat16"))}), method="conditional")
    with pytest.raises(NotImplementedError, match="two operators"):
        L.averaged_direction(prob, P.Plan(backward={3: P.Round("bfloat16")}), np.zeros(3))


# -------------------------------------------------------------------------------------------------
# kinds with memory: their settled law at a frozen input (fbsgd.laws.stationary)
# -------------------------------------------------------------------------------------------------


def _message(prob, w):
    return (-prob.signed_features @ w)[:, None]


def test_error_feedback_at_a_frozen_input_averages_to_the_input_exactly(nonconvex):
    """Σ sent = draws·x − (e_end − e_start): shifted by that remainder, the samples average to x."""
    x = _message(nonconvex, _w(nonconvex))
    for inner in (P.TopK(200, "batch"), P.Round("float8_e4m3fn", "nearest")):
        law = P.ErrorFeedback(inner).conditional_law(x, draws=32)
        np.testing.assert_allclose(law.mean(), x, rtol=0, atol=1e-12)
        assert law.samples.shape == x.shape + (32,)
        assert np.ptp(law.samples, axis=-1).max() > 0  # a distribution over time, not one point


def test_the_settled_law_is_the_kinds_own_outputs_after_burn_in(nonconvex):
    """laws.stationary's samples are the outputs of steps burn .. burn + draws − 1 of the kind run on one
    input with its memory carried, computed here by hand with the kind's transform."""
    from fbsgd import laws
    x = _message(nonconvex, _w(nonconvex, 1))
    p = P.ErrorFeedback(P.TopK(200, "batch"))
    law = laws.stationary(p, x, draws=5, burn=3, seed=4)
    key = rng.derive_key("fbsgd.laws.stationary", 4)
    mem, outs = p.init_memory(), []
    for step in range(8):
        y, mem = p.transform(x.copy(), key, step, mem)
        outs.append(np.asarray(y, dtype=float).reshape(x.shape))
    np.testing.assert_array_equal(law.samples, np.stack(outs[3:], axis=-1))
    with pytest.raises(ValueError, match="burn"):
        laws.stationary(p, x, draws=5, burn=-1)


def test_a_memory_that_blows_up_at_a_frozen_input_predicts_divergence(nonconvex):
    """Rand-K keeps k of M entries scaled by M/k = 10: error feedback multiplies a kept entry's residual
    by 1 − 10 = −9, so it grows without bound; the law has NaN moments and the limit is divergence."""
    x = _message(nonconvex, _w(nonconvex))
    law = P.ErrorFeedback(P.RandK(200, "batch")).conditional_law(x, draws=32)
    assert np.all(np.isnan(law.mean()))
    lim = L.small_step_limit(nonconvex, P.Plan(backward={2: P.ErrorFeedback(P.RandK(200, "batch"))}), draws=32)
    assert lim["escapes"] and lim["plateau"] == float("inf")


def test_error_feedback_on_the_backward_message_predicts_standard_sgds_limit(nonconvex):
    """The chain is linear after the backward message: the averaged direction sees only the mean of the
    sent messages, which is the message itself, so the limit is the minimizer (no floor), while plain
    Top-K of the backward message leaves one."""
    ef = L.small_step_limit(nonconvex, P.Plan(backward={2: P.ErrorFeedback(P.TopK(200, "batch"))}), draws=16)
    plain = L.small_step_limit(nonconvex, P.Plan(backward={2: P.TopK(200, "batch")}))
    assert ef["plateau"] < 1e-10 and not ef["escapes"]
    assert plain["plateau"] > 1e-3
