"""Forward gradients: forward-mode products, unbiasedness and variance (statistical
tests with tolerances from the closed-form variance), and the training loop."""
import numpy as np
import pytest

from fbsgd.studies.forward_gradients import study as FM
from fbsgd.studies.forward_gradients import problems as FP
from fbsgd.studies.forward_gradients import estimators as FG
from fbsgd.optimizers import SGD, PassGradient, descend, minibatch_indices, train
from fbsgd.passes import passes
from fbsgd.problems import LogisticRegression

B = 4


def _beale(p):
    x, y = p
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _small_mlp():
    data = FP.teacher_classification(M=40, d=3, teacher_hidden=3, data_seed=2)
    net = FP.mlp_classifier(3, 5)
    w = net.init_weight(np.random.default_rng(3))
    return net, data, w


@pytest.mark.parametrize("op,y", [
    (FP.Beale(), np.random.default_rng(0).uniform(-1, 2, (B, 2))),
    (FP.LogisticMargin(), np.column_stack([np.random.default_rng(1).standard_normal(B), [1.0, -1.0, 1.0, -1.0]])),
    (FP.CarryLabel(__import__("fbsgd.operators", fromlist=["Linear"]).Linear(3, 2)), np.random.default_rng(2).standard_normal((B, 4))),
    (FP.CarryLabel(__import__("fbsgd.operators", fromlist=["Tanh"]).Tanh(3)), np.random.default_rng(3).standard_normal((B, 4))),
], ids=["beale", "margin", "carry-linear", "carry-tanh"])
def test_new_operators_match_finite_differences(op, y):
    r = np.random.default_rng(5)
    w = r.standard_normal(op.weight_size)
    v = r.standard_normal((B, op.out_dim))
    dy, dw = r.standard_normal(y.shape), r.standard_normal(op.weight_size)
    h = 1e-6
    fd = (op.forward(y + h * dy, w + h * dw) - op.forward(y - h * dy, w - h * dw)) / (2 * h)
    np.testing.assert_allclose(op.jvp(y, w, dy, dw), fd, rtol=1e-6, atol=1e-8)
    fd_y = np.sum(v * (op.forward(y + h * dy, w) - op.forward(y - h * dy, w)), axis=1) / (2 * h)
    np.testing.assert_allclose(np.sum(op.vjp_input(y, w, v) * dy, axis=1), fd_y, rtol=1e-6, atol=1e-8)
    fd_w = np.sum(v * (op.forward(y, w + h * dw) - op.forward(y, w - h * dw)), axis=1) / (2 * h)
    np.testing.assert_allclose(op.vjp_weight(y, w, v) @ dw, fd_w, rtol=1e-6, atol=1e-8)


def test_beale_values_and_gradient_against_an_independent_formula():
    net, x = FP.beale_problem()
    assert net.value(x, FP.BEALE_MINIMUM)[0] == pytest.approx(0.0, abs=1e-14)
    p = np.array([1.5, -0.1])
    assert net.value(x, p)[0] == pytest.approx(_beale(p), rel=1e-14)
    h = 1e-6
    fd = np.array([(_beale(p + h * e) - _beale(p - h * e)) / (2 * h) for e in np.eye(2)])
    np.testing.assert_allclose(FP.beale_gradient(p), fd, rtol=1e-7)
    np.testing.assert_allclose(FG.directional_derivatives(net, x, p, np.eye(2), "loop"), fd, rtol=1e-7)


def test_jvp_pass_is_the_directional_derivative_of_the_loss():
    net, data, w = _small_mlp()
    dw = np.random.default_rng(7).standard_normal(net.weight_size)
    h = 1e-6
    fd = (net.value(data, w + h * dw) - net.value(data, w - h * dw)) / (2 * h)
    value, directional = FG.jvp_pass(net, data, w, dw)
    np.testing.assert_allclose(value, net.value(data, w))
    np.testing.assert_allclose(directional, fd, rtol=1e-6, atol=1e-9)


def test_loop_and_basis_directional_derivatives_agree():
    net, data, w = _small_mlp()
    V = np.random.default_rng(8).standard_normal((7, net.weight_size))
    a = FG.directional_derivatives(net, data, w, V, "loop")
    b = FG.directional_derivatives(net, data, w, V, "basis")
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError):
        FG.directional_derivatives(net, data, w, V[:, :-1])


def _estimator_draws(net, x, w, N, seed=0):
    est = FG.ForwardGradient(net)
    state = est.init(seed)
    G = np.empty((N, net.weight_size))
    for i in range(N):
        G[i], state = est(w, x, state)
    return G


def test_forward_gradient_is_unbiased():
    """Mean of N draws of the estimator; per coordinate the variance of one draw is
    ‖u‖² + u_i² (Cov g = ‖u‖² I + u uᵀ for v ~ N(0, I)), so each coordinate of the
    mean must lie within 4.5 standard errors of u (≈1e-4 chance of a false alarm over
    all coordinates).  The test has power: a 10% bias is caught."""
    prob = LogisticRegression.generate(d=6, M=50, data_seed=1)
    w = np.random.default_rng(2).standard_normal(6) * 0.5
    u = passes(prob.net, prob.data, w).gradient()
    N = 20_000
    G = _estimator_draws(prob.net, prob.data, w, N, seed=11)
    se = np.sqrt((u @ u + u**2) / N)
    z = (G.mean(axis=0) - u) / se
    assert np.all(np.abs(z) < 4.5), z
    # power: the same draws scaled as if the directions had standard deviation 1.1
    z_biased = (1.21 * G.mean(axis=0) - u) / se
    assert np.any(np.abs(z_biased) > 4.5)


def test_forward_gradient_variance_is_n_plus_one_times_squared_gradient():
    net, x = FP.beale_problem()
    p = np.array([1.5, -0.1])
    u = FP.beale_gradient(p)
    N = 20_000
    G = _estimator_draws(net, x, p, N, seed=3)
    sq = np.sum((G - u) ** 2, axis=1) / (u @ u)
    assert abs(sq.mean() - 3.0) < 5 * sq.std() / np.sqrt(N)
    # the chapter's vectorized measurement agrees with the closed form too
    rows = FM.monte_carlo_errors(net, x, p, [1, 10], repeats=4000, seed=1)
    for r in rows.itertuples():
        assert abs(r.mse - r.closed_form_mse) < 5 * r.mse_se
    vr = FM.variance_ratio(net, x, p, 4, 5000, seed=2)
    assert abs(vr["variance"] - 0.75) < 5 * vr["variance_se"]


def test_estimator_is_a_pure_function_of_seed_and_step():
    net, data, w = _small_mlp()
    est = FG.ForwardGradient(net, n_directions=3)
    g1, s1 = est(w, data, est.init(5))
    g2, _ = est(w, data, est.init(5))
    g3, _ = est(w, data, s1)
    np.testing.assert_array_equal(g1, g2)
    assert not np.allclose(g1, g3)


def test_one_step_ratios_on_the_quadratic_match_the_closed_form():
    for n, c in [(10, 0.5), (50, 1.4)]:
        gamma = 2 * c / (n + 2)
        r = FM.one_step_ratios(n, gamma, 300, range(4))
        rho = 1 - 2 * gamma + gamma**2 * (n + 2)
        assert abs(r.mean() - rho) < 5 * r.std() / np.sqrt(r.size)


@pytest.mark.parametrize("estimator", ["backprop", "forward"])
def test_linearized_floor_matches_the_isotropic_closed_form(estimator):
    n, h, s, gamma = 6, 0.7, 0.3, 0.05
    got = FM.linearized_floor(h * np.eye(n), s * np.eye(n), gamma, estimator)
    if estimator == "backprop":
        sigma = gamma**2 * s / (1 - (1 - gamma * h) ** 2)
    else:  # σ = σ − 2γhσ + γ²[(n+2)h²σ + (n+2)s]
        sigma = gamma * (n + 2) * s / (2 * h - gamma * (n + 2) * h**2)
    assert got == pytest.approx(0.5 * h * n * sigma, rel=1e-10)
    assert FM.linearized_floor(h * np.eye(n), s * np.eye(n), 3.0, estimator) == float("inf")


def test_train_and_descend_are_full_batch_gradient_descent():
    net, data, w = _small_mlp()
    expected = [np.array(w, dtype=float)]
    for _ in range(25):  # w_{t+1} = w_t − γ u(w_t), u from the clean passes of eq. (4)
        expected.append(expected[-1] - 0.3 * passes(net, data, expected[-1]).gradient())
    expected = np.array(expected)
    np.testing.assert_allclose(descend(net, data, w, SGD(0.3), 25), expected, rtol=1e-12, atol=1e-14)
    seen = []
    run = train(PassGradient(net), w, SGD(0.3), 25, data, callback=lambda t, w_, g, st: seen.append(w_.copy()))
    np.testing.assert_allclose(np.array(seen), expected[1:], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(run.w, expected[-1], rtol=1e-12, atol=1e-14)


def test_train_records_metrics_uses_minibatches_and_detects_divergence():
    net, data, w = _small_mlp()
    loss = lambda v: float(net.value(data, v).mean())  # noqa: E731
    a = train(FG.ForwardGradient(net), w, SGD(0.05), 40, data, batch_size=8, seed=4, metrics={"loss": loss}, record_every=15)
    b = train(FG.ForwardGradient(net), w, SGD(0.05), 40, data, batch_size=8, seed=4, metrics={"loss": loss}, record_every=15)
    np.testing.assert_array_equal(a.t, [0, 15, 30, 40])
    np.testing.assert_array_equal(a["loss"], b["loss"])
    assert a["loss"][0] == pytest.approx(loss(w))
    idx = minibatch_indices(123, 7, 40, 1000)
    assert idx.min() >= 0 and idx.max() <= 39 and len(np.unique(idx)) == 40
    np.testing.assert_array_equal(idx, minibatch_indices(123, 7, 40, 1000))
    blow = train(PassGradient(net), w, SGD(1e9), 10, data, metrics={"loss": loss}, stop_above=1e6)
    assert blow.diverged and np.isnan(blow["loss"][-1])


def test_slowdown_reads_curves():
    t = np.arange(0, 101, 10.0)
    fast = 1 / (1 + t)
    slow = 1 / (1 + t / 4)
    assert 3.5 < FM.slowdown(t, fast, slow) < 4.5
    assert 0.2 < FM.slowdown(t, slow, fast) < 0.3
    assert FM.slowdown(t, fast, np.full_like(t, 2.0)) == float("inf")
