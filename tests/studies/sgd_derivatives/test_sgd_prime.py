"""SGD′ (the Jacobian recursion) against finite differences of unrolled SGD,
the poster's rewrite with its error term, and the exact moments for least squares."""
import numpy as np
import pytest

from fbsgd.studies.sgd_derivatives import sgd_prime as S


def _unrolled(A, b_of_theta, theta, beta, etas, xis):
    """SGD on (1/m)Σ φ(a·x − b_ξ), φ(r) = r²/2 + β ln cosh r, written out independently."""
    x = np.zeros(A.shape[1])
    b = b_of_theta(theta)
    for eta, s in zip(etas, xis):
        r = A[s] @ x - b[s]
        x = x - eta * (r + beta * np.tanh(r)) * A[s]
    return x


@pytest.mark.parametrize("setting", S.SETTINGS)
@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_recursion_matches_finite_differences_of_unrolled_iterates(setting, beta):
    pr = S.ParametricLeastSquares.generate(d=3, m=8, setting=setting, curvature=beta, data_seed=4)
    K = 60
    etas = np.full(K, 0.3 / pr.constants["L"]) * (1 + 0.5 * np.sin(np.arange(K)))  # varying steps
    xis = S.sample_indices(9, K, pr.m)
    b_of = (lambda th: pr.A @ th) if setting == "double_interpolation" else (lambda th: th)
    h = 1e-6
    fd = np.column_stack([(_unrolled(pr.A, b_of, pr.theta + h * e, beta, etas, xis) - _unrolled(pr.A, b_of, pr.theta - h * e, beta, etas, xis)) / (2 * h)
                          for e in np.eye(pr.p)])
    xs, Ds, es = S.sgd_prime_reference(pr, etas, xis)
    np.testing.assert_allclose(xs[-1], _unrolled(pr.A, b_of, pr.theta, beta, etas, xis), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(Ds[-1], fd, rtol=1e-6, atol=1e-8)
    assert np.abs(Ds[-1]).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("beta", [0.0, 1.3])
def test_jacobian_of_the_solution_map(beta):
    pr = S.ParametricLeastSquares.generate(d=4, m=12, setting="general", curvature=beta, data_seed=1)
    x = pr.x_star
    assert np.linalg.norm(pr.grad_x(x)) < 1e-12
    h = 1e-6
    fd = np.column_stack([(pr.solve_x(pr.theta + h * e) - pr.solve_x(pr.theta - h * e)) / (2 * h) for e in np.eye(pr.p)])
    np.testing.assert_allclose(pr.jacobian_star, fd, rtol=1e-6, atol=1e-9)
    if beta == 0:
        np.testing.assert_allclose(pr.jacobian_star, np.linalg.pinv(pr.A), rtol=1e-10, atol=1e-12)
    dbl = S.ParametricLeastSquares.generate(d=4, m=12, setting="double_interpolation", curvature=beta, data_seed=1)
    np.testing.assert_allclose(dbl.x_star, dbl.theta, atol=1e-12)
    np.testing.assert_allclose(dbl.jacobian_star, np.eye(4), atol=1e-10)
    assert dbl.constants["sigma2_x"] < 1e-20 and dbl.constants["sigma2_D"] < 1e-20
    si = S.ParametricLeastSquares.generate(d=4, m=12, setting="simple_interpolation", curvature=beta, data_seed=1)
    assert si.constants["sigma2_x"] < 1e-20 and si.constants["sigma2_D"] > 1e-3


@pytest.mark.parametrize("beta", [0.0, 0.8])
def test_rewrite_with_the_error_term_is_exact(beta):
    """D_{k+1} = D_k − η[∇²ₓₓf(x*)D_k + ∇²ₓθf(x*)] + e_{k+1}, Hessians written out here."""
    pr = S.ParametricLeastSquares.generate(d=3, m=10, setting="general", curvature=beta, data_seed=2)
    K = 40
    etas = np.full(K, 0.2 / pr.constants["L"])
    xis = S.sample_indices(1, K, pr.m)
    xs, Ds, es = S.sgd_prime_reference(pr, etas, xis)
    rs = pr.residuals(pr.x_star)
    for k in range(K):
        a, s = pr.A[xis[k]], xis[k]
        h_star = 1 + beta / np.cosh(rs[s]) ** 2
        pred = Ds[k] - etas[k] * (h_star * np.outer(a, a) @ Ds[k] - h_star * np.outer(a, pr.db[s])) + es[k]
        np.testing.assert_allclose(Ds[k + 1], pred, rtol=1e-12, atol=1e-14)
    if beta == 0:
        assert np.all(es == 0)
    else:
        assert np.abs(es).max() > 1e-6


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_compiled_kernel_matches_the_reference(beta):
    pr = S.ParametricLeastSquares.generate(d=3, m=9, setting="general", curvature=beta, data_seed=5)
    K = 300
    etas = S.decreasing_steps(pr.constants["mu"], 20.0, K) * 0.05
    ck = np.array([0, 1, 7, 100, 299, 300])
    run = S.run_sgd_prime(pr, etas, [13], ck)
    xs, Ds, es = S.sgd_prime_reference(pr, etas, S.sample_indices(13, K, pr.m))
    np.testing.assert_allclose(run["D_err2"][0], [np.sum((Ds[k] - pr.jacobian_star) ** 2) for k in ck], rtol=1e-10)
    np.testing.assert_allclose(run["x_err2"][0], [np.sum((xs[k] - pr.x_star) ** 2) for k in ck], rtol=1e-10)
    assert run["e_max"][0] == pytest.approx(max(np.linalg.norm(e) for e in es), rel=1e-10, abs=0)
    # conditional moments of e_{k+1}/η at a checkpoint, averaged over all samples by hand
    k = 7
    rs_star = pr.residuals(pr.x_star)
    terms = []
    for s in range(pr.m):
        a = pr.A[s]
        dh = beta / np.cosh(rs_star[s]) ** 2 - beta / np.cosh(a @ xs[k] - pr.b()[s]) ** 2
        terms.append(dh * np.outer(a, a @ Ds[k] - pr.db[s]))
    terms = np.array(terms)
    j = list(ck).index(k)
    assert run["eps_bias"][0, j] == pytest.approx(np.linalg.norm(terms.mean(axis=0)), rel=1e-9, abs=1e-300)
    assert run["eps_rms"][0, j] == pytest.approx(np.sqrt(np.mean(np.sum(terms**2, axis=(1, 2)))), rel=1e-9, abs=1e-300)


def test_second_moment_rate_closed_form():
    """Rows e_i (A = I): diagonal entries shrink by (1−η)² w.p. 1/d, off-diagonal by (1−η) w.p. 2/d,
    so the spectral radius is 1 − (2η − η²)/d."""
    d, eta = 4, 0.3
    assert S.second_moment_rate(np.eye(d), eta) == pytest.approx(1 - (2 * eta - eta**2) / d, rel=1e-12)


def test_exact_moments_match_monte_carlo_and_the_stationary_level():
    pr = S.ParametricLeastSquares.generate(d=2, m=6, setting="general", curvature=0.0, data_seed=3)
    eta = 0.3 / pr.constants["L"]
    K = 400
    ck = np.array([0, 10, 50, 200, 400])
    exact = S.expected_error(pr, S.constant_steps(eta, K), ck)
    assert exact[0] == pytest.approx(np.sum(pr.jacobian_star**2))
    runs = S.run_sgd_prime(pr, S.constant_steps(eta, K), range(4000), ck)
    mc, se = runs["D_err2"].mean(axis=0), runs["D_err2"].std(axis=0) / np.sqrt(4000)
    assert np.all(np.abs(mc[1:] - exact[1:]) < 5 * se[1:])
    long = S.expected_error(pr, S.constant_steps(eta, 20_000), np.array([20_000]))
    assert long[0] == pytest.approx(S.stationary_error(pr, eta), rel=1e-6)
    exact_x = S.expected_error(pr, S.constant_steps(eta, K), ck, which="x")
    assert np.all(np.abs(runs["x_err2"].mean(axis=0)[1:] - exact_x[1:]) < 5 * runs["x_err2"].std(axis=0)[1:] / np.sqrt(4000))
    with pytest.raises(ValueError):
        S.stationary_error(S.ParametricLeastSquares.generate(2, 6, "general", 0.5, 3), eta)


def test_interpolation_converges_linearly_and_ols_error_term_vanishes():
    pr = S.ParametricLeastSquares.generate(d=3, m=20, setting="double_interpolation", curvature=0.0, data_seed=0)
    eta = 0.25 / pr.constants["L"]
    ck = np.array([0, 500, 1000])
    r = S.run_sgd_prime(pr, S.constant_steps(eta, 1000), range(50), ck)
    assert np.all(r["e_max"] == 0.0)
    rate = (r["D_err2"].mean(axis=0)[2] / r["D_err2"].mean(axis=0)[1]) ** (1 / 500)
    assert rate < 1 - pr.constants["mu"] * eta / 2  # at least the poster's rate
    assert abs(np.log(rate) / np.log(S.second_moment_rate(pr.A, eta)) - 1) < 0.15


def test_invalid_inputs():
    with pytest.raises(ValueError):
        S.ParametricLeastSquares.generate(d=5, m=3)
    with pytest.raises(ValueError):
        S.ParametricLeastSquares.generate(setting="nope")
    pr = S.ParametricLeastSquares.generate(d=2, m=4)
    with pytest.raises(ValueError):
        S.run_sgd_prime(pr, np.ones(5), [0], np.array([3, 2]))
