"""The Monte Carlo gradient-error estimator against closed forms, and the
bounds of Section 4 against measured errors."""
import math

import numpy as np
import pytest

from fbsgd.theory import error_bounds as B
from fbsgd import operators as O
from fbsgd import perturbations as P
from fbsgd.passes import Composite
from fbsgd.studies.error_propagation.injection import (gradient_error, linear_chain_error, scaled_layers, tanh_chain,
                               unit_vector)


def _small_linear():
    """x ∈ R³ → W₁ (4×3) → W₂ (5×4) → r (1×5): N = 3."""
    rng = np.random.default_rng(7)
    Ws = [rng.standard_normal((4, 3)) / 2, rng.standard_normal((5, 4)) / 2, rng.standard_normal((1, 5))]
    net = Composite([O.Linear(3, 4), O.Linear(4, 5), O.Linear(5, 1)])
    w = np.concatenate([W.ravel() for W in Ws])
    x = rng.standard_normal((1, 3))
    return net, w, Ws, x


def _hand_backward_eps3(Ws, x, std, mean):
    """ε₃ ~ N(mean, std²) per entry, added to v₂: ũ₂ − u₂ = ε y₁ᵀ, ũ₁ − u₁ = (W₂ᵀε) xᵀ."""
    W1, W2, _ = Ws
    x = x.ravel()
    y1 = W1 @ x
    m = np.full(5, mean)
    mse = (5 * std**2 + m @ m) * (y1 @ y1) + (std**2 * np.sum(W2**2) + np.sum((W2.T @ m) ** 2)) * (x @ x)
    bias = (m @ m) * (y1 @ y1) + np.sum((W2.T @ m) ** 2) * (x @ x)
    return mse, bias


def _hand_forward_delta1(Ws, x, std):
    """δ₁ ~ N(0, std²): ũ₂ − u₂ = v₂ δᵀ with v₂ = rᵀ, ũ₃ − u₃ = (W₂δ)ᵀ (v₃ = 1)."""
    _, W2, r = Ws
    return std**2 * (4 * np.sum(r**2) + np.sum(W2**2))


def test_closed_form_helper_matches_hand_formulas():
    _, _, Ws, x = _small_linear()
    mse, bias = linear_chain_error(Ws, x, "backward", 3, mean=0.3, var=0.25)
    assert (mse, bias) == pytest.approx(_hand_backward_eps3(Ws, x, 0.5, 0.3))
    mse, bias = linear_chain_error(Ws, x, "forward", 1, mean=0.0, var=0.04)
    assert mse == pytest.approx(_hand_forward_delta1(Ws, x, 0.2)) and bias == 0.0
    # a perturbation at the last forward location only moves the readout's gradient: ũ₃ − u₃ = δ₂
    assert linear_chain_error(Ws, x, "forward", 2, mean=0.0, var=0.09)[0] == pytest.approx(5 * 0.09)
    # ε₂ reaches only u₁ = v₁ xᵀ
    assert linear_chain_error(Ws, x, "backward", 2, mean=0.0, var=0.09)[0] == pytest.approx(4 * 0.09 * float(np.sum(x**2)))


def test_mse_unbiased_linear_backward_gaussian():
    """E‖ũ − u‖² for backward Gaussian noise in a linear chain is known exactly."""
    net, w, Ws, x = _small_linear()
    exact, _ = _hand_backward_eps3(Ws, x, 0.5, 0.0)
    z = []
    for seed in range(40):
        ge = gradient_error(net, w, x, P.Plan(backward={3: P.GaussianNoise(0.5)}), 2048, seed=seed)
        z.append((ge.mse - exact) / ge.mse_se)
    z = np.array(z)
    # the average of 40 independent estimates is unbiased: within 4 standard errors of the mean
    assert abs(z.mean()) < 4 / math.sqrt(len(z))
    # and the jackknife standard errors are calibrated: z-scores have spread close to 1
    assert 0.6 < z.std() < 1.5


def test_bias_estimator_unbiased_at_zero_and_plugin_is_not():
    """Zero-mean backward noise: ‖E[ũ − u]‖² = 0 exactly.  The U-statistic averages to 0;
    the plug-in ‖mean‖² would average to tr Cov/n > 0."""
    net, w, Ws, x = _small_linear()
    exact_mse, _ = _hand_backward_eps3(Ws, x, 0.5, 0.0)
    est, se, se0 = [], [], []
    n = 2048
    for seed in range(40):
        ge = gradient_error(net, w, x, P.Plan(backward={3: P.GaussianNoise(0.5)}), n, seed=seed)
        est.append(ge.bias_sq)
        se.append(ge.bias_sq_se)
        se0.append(ge.bias_sq_se0)
    est, se, se0 = np.array(est), np.array(se), np.array(se0)
    assert abs(est.mean()) < 4 * est.std() / math.sqrt(len(est))
    assert (est < 0).any() and (est > 0).any()
    plugin_offset = exact_mse / ge.n_draws  # E‖mean Δ‖² when EΔ = 0
    assert abs(est.mean()) < 0.2 * plugin_offset
    # the zero-bias standard error matches the spread; the general one may only err on the large side
    assert 0.7 < est.std() / se0.mean() < 1.4
    assert 0.5 < est.std() / se.mean() < 1.2


def test_bias_interval_covers_zero_for_a_low_rank_error():
    """A single tanh unit feeding a 3-vector: the error of ũ lives in a 3-dimensional space, the
    case where a jackknife interval of the squared bias undercovers.  The 95% interval must cover 0."""
    net = Composite([O.Linear(1, 3), O.Tanh(3), O.Linear(3, 1)])
    w = np.array([0.8, -0.5, 1.2, 1.0, 0.3, -0.7])
    x = np.array([[0.9]])
    z = np.array([(lambda g: g.bias_sq / g.bias_sq_se)(gradient_error(net, w, x, P.Plan(backward={3: P.UniformNoise(-1, 1)}), 2048, seed=s))
                  for s in range(150)])
    assert np.mean(np.abs(z) > 1.96) <= 0.06
    assert np.abs(z).max() < 4


def test_bias_standard_error_calibrated_when_bias_is_large():
    net, w, Ws, x = _small_linear()
    _, exact_bias = _hand_backward_eps3(Ws, x, 0.5, 0.3)
    z = np.array([(lambda g: (g.bias_sq - exact_bias) / g.bias_sq_se)(
        gradient_error(net, w, x, P.Plan(backward={3: P.GaussianNoise(0.5, mean=0.3)}), 2048, seed=100 + s)) for s in range(40)])
    assert abs(z.mean()) < 4 / math.sqrt(len(z))
    assert 0.6 < z.std() < 1.5


def test_bias_nonzero_mean_backward_gaussian():
    net, w, Ws, x = _small_linear()
    exact_mse, exact_bias = _hand_backward_eps3(Ws, x, 0.5, 0.3)
    ge = gradient_error(net, w, x, P.Plan(backward={3: P.GaussianNoise(0.5, mean=0.3)}), 40_000, seed=3)
    assert abs(ge.bias_sq - exact_bias) < 4 * ge.bias_sq_se
    assert abs(ge.mse - exact_mse) < 4 * ge.mse_se
    assert ge.bias_sq_se < 0.05 * exact_bias


def test_forward_gaussian_linear_is_unbiased():
    net, w, Ws, x = _small_linear()
    exact = _hand_forward_delta1(Ws, x, 0.2)
    ge = gradient_error(net, w, x, P.Plan(forward={1: P.GaussianNoise(0.2)}), 20_000, seed=5)
    assert abs(ge.mse - exact) < 4 * ge.mse_se
    assert abs(ge.bias_sq) < 4 * ge.bias_sq_se
    # per-operator split: nothing reaches u₁ from δ₁
    assert ge.mse_by_operator[0] < 1e-20 * ge.mse and ge.mse_by_operator.sum() == pytest.approx(ge.mse)


def test_constant_perturbation_is_deterministic():
    net, w, Ws, x = _small_linear()
    eps = np.array([0.1, -0.2, 0.3, 0.0, 0.5])
    ge = gradient_error(net, w, x, P.Plan(backward={3: P.Constant(eps)}), 64, seed=0)
    exact = float(np.sum(eps**2) * np.sum((Ws[0] @ x.ravel()) ** 2) + np.sum((Ws[1].T @ eps) ** 2) * float(np.sum(x**2)))
    assert ge.mse == pytest.approx(exact, rel=1e-10)
    assert ge.bias_sq == pytest.approx(exact, rel=1e-8)
    assert ge.mse_se < 1e-12 * exact and ge.bias_sq_se < 1e-6 * exact


def _scalar_tanh_chain(a_w=0.8, r=1.3):
    """x → a_w·x → tanh → r·y: scalar chain with N = 3."""
    net = Composite([O.Linear(1, 1), O.Tanh(1), O.Linear(1, 1)])
    return net, np.array([a_w, r])


def test_tanh_bias_two_point_closed_form():
    """δ₁ = ±a on the pre-activation z = a_w x: E ũ₃ = ½[tanh(z+a) + tanh(z−a)],
    E ũ₁ = r x ·½[tanh'(z+a) + tanh'(z−a)]; the bias is their difference from the clean values."""
    net, w = _scalar_tanh_chain()
    x = np.array([[0.9]])
    a = 0.6
    z = 0.8 * 0.9
    dt = lambda s: 1 - math.tanh(s) ** 2  # noqa: E731
    b3 = 0.5 * (math.tanh(z + a) + math.tanh(z - a)) - math.tanh(z)
    b1 = 1.3 * 0.9 * (0.5 * (dt(z + a) + dt(z - a)) - dt(z))
    m3 = 0.5 * ((math.tanh(z + a) - math.tanh(z)) ** 2 + (math.tanh(z - a) - math.tanh(z)) ** 2)
    m1 = 0.5 * ((1.3 * 0.9) ** 2) * ((dt(z + a) - dt(z)) ** 2 + (dt(z - a) - dt(z)) ** 2)
    ge = gradient_error(net, w, x, P.Plan(forward={1: P.TwoPointNoise(a)}), 40_000, seed=11)
    assert abs(ge.bias_sq - (b1**2 + b3**2)) < 4 * ge.bias_sq_se
    assert abs(ge.mse - (m1 + m3)) < 4 * ge.mse_se
    assert b1**2 + b3**2 > 20 * ge.bias_sq_se  # a real bias, resolved
    # backward zero-mean noise at ε₃ leaves no bias, to Monte Carlo precision
    gb = gradient_error(net, w, x, P.Plan(backward={3: P.TwoPointNoise(a)}), 40_000, seed=12)
    assert abs(gb.bias_sq) < 4 * gb.bias_sq_se and gb.mse > 0


def test_region_covers_clean_and_perturbed_inputs():
    net, w, _ = scaled_layers(4, 3, 1.5, seed=1)
    x = unit_vector(3)
    ge = gradient_error(net, w, x, P.Plan(forward={1: P.UniformNoise(-0.5, 0.5)}), 256, seed=0)
    reg = ge.region
    assert reg.input_norm_max[0] == pytest.approx(1.0)  # operator 1 reads the clean x
    assert reg.input_norm_max[1] > 1.5  # ‖W₁x‖ = 1.5, plus noise
    assert np.all(reg.hi[1] - reg.lo[1] > 0.5)  # uniform noise of width 1 was seen


@pytest.mark.parametrize("plan", [
    P.Plan(forward={1: P.GaussianNoise(0.1, per_sample=False)}),
    P.Plan(backward={2: P.every(3, P.GaussianNoise(0.1))}),
])
def test_rejects_plans_that_are_not_one_draw_per_row(plan):
    net, w, _, x = _small_linear()
    with pytest.raises(ValueError):
        gradient_error(net, w, x, plan, 256)


# --- the bounds hold on measured cases ------------------------------------------------


def _constants(net, w, ge):
    return B.chain_constants(net, w, ge.region)[1]


@pytest.mark.parametrize("where,loc", [("forward", 1), ("forward", "N-1"), ("backward", "N"), ("backward", 2)])
@pytest.mark.parametrize("kind", ["linear", "tanh"])
def test_theorem1_holds_on_measured_chains(kind, where, loc):
    d = 6
    if kind == "linear":
        net, w, _ = scaled_layers(5, d, 1.3, "gaussian", seed=2)
    else:
        net, w = tanh_chain(2, d, 1.5, seed=2)
    N = len(net)
    k = {1: 1, 2: 2, "N-1": N - 1, "N": N}[loc]
    p = P.zero_mean_uniform(0.3, d)
    ge = gradient_error(net, w, unit_vector(d, 2), P.Plan(**{where: {k: p}}), 4096, seed=1)
    K = _constants(net, w, ge)
    m2 = B.perturbation_moments(p, d).second
    kw = {"delta_sq": {k: m2}} if where == "forward" else {"eps_sq": {k: m2}}
    assert ge.mse_ci()[1] <= B.mse_bound(N, K, **kw)


def test_theorem2_holds_for_zero_mean_forward_bias_in_tanh_chain():
    d = 6
    net, w = tanh_chain(2, d, 1.5, seed=4)
    p = P.zero_mean_uniform(1.0, d)
    ge = gradient_error(net, w, unit_vector(d, 4), P.Plan(forward={1: p}), 20_000, seed=3)
    assert ge.bias_sq > 5 * ge.bias_sq_se  # the bias is real
    K = _constants(net, w, ge)
    mom = B.perturbation_moments(p, d)
    assert ge.bias_sq_ci()[1] <= B.bias_bound(len(net), K, delta_fourth={1: mom.fourth})


def test_printed_33a_fails_for_a_linear_chain_and_the_derivation_holds():
    """For f(y, W) = W y the mixed second derivative is constant, so L∇²f = 0 and the
    printed (33a) gives C^b_δ = 0; in a two-operator chain C̃^b_δ is 0 too, so the printed
    (23) bounds the bias of a non-zero-mean δ₁ by 0 although ũ₂ − u₂ = δ₁ exactly."""
    net, w, Ws = scaled_layers(2, 3, 1.0, seed=0)
    x = unit_vector(3)
    p = P.nonzero_mean_uniform(0.5, 3)
    ge = gradient_error(net, w, x, P.Plan(forward={1: p}), 4096, seed=0)
    mom = B.perturbation_moments(p, 3)
    assert ge.bias_sq == pytest.approx(mom.mean_sq, rel=0.05)  # bias = ‖Eδ₁‖²
    K = _constants(net, w, ge)
    kw = dict(delta_mean_sq={1: mom.mean_sq}, delta_fourth={1: mom.fourth})
    assert B.bias_bound(2, K, **kw) == 0.0 < ge.bias_sq
    assert B.bias_bound(2, K, variant="derivation", **kw) >= ge.bias_sq_ci()[1]


# which perturbations gradient_error measures: read off their schedule and law

@pytest.mark.parametrize("p", [P.every(2, P.UniformNoise(-1.0, 1.0)), P.at_steps([0, 1, 2], P.UniformNoise(-1.0, 1.0)),
                               P.budget(3, 30, P.GaussianNoise(1.0)),
                               P.chain(P.GaussianNoise(0.1), P.every(3, P.UniformNoise(-1.0, 1.0)))])
def test_gradient_error_refuses_a_perturbation_that_switches_with_the_step(p):
    net, w, _, x = _small_linear()
    with pytest.raises(ValueError, match="switches with the step; gradient_error measures one step's law"):
        gradient_error(net, w, x, P.Plan(forward={1: p}), 64)


@pytest.mark.parametrize("p", [P.UniformNoise(-1.0, 1.0, per_sample=False), P.GaussianNoise(1.0, per_sample=False),
                               P.chain(P.TwoPointNoise(0.5, per_sample=False))])
def test_gradient_error_refuses_a_draw_shared_by_the_batch(p):
    net, w, _, x = _small_linear()
    with pytest.raises(ValueError, match="draws one value for the whole batch; gradient_error needs per_sample=True"):
        gradient_error(net, w, x, P.Plan(backward={2: p}), 64)


def test_gradient_error_accepts_per_sample_and_deterministic_laws():
    from fbsgd.studies.error_propagation.injection import _check_iid
    for p in (P.UniformNoise(-1.0, 1.0), P.every(1, P.GaussianNoise(1.0)), P.Constant(0.3), P.Constant(np.ones(4)),
              P.chain(P.UniformNoise(-1.0, 1.0), P.GaussianNoise(0.1)), P.chain(P.Constant(0.1), P.Constant(0.2)),
              P.Round("bfloat16", "stochastic"), P.Identity()):
        _check_iid(p)
    net, w, _, x = _small_linear()  # a constant ε is the same "draw" in every row: the error is all bias
    ge = gradient_error(net, w, x, P.Plan(backward={3: P.Constant(0.5)}), 64)
    assert ge.mse > 0 and ge.bias_sq == pytest.approx(ge.mse, rel=1e-9)
