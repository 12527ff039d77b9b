"""Appendix A: closed forms against runs of the core passes."""
import numpy as np
import pytest

from fbsgd.studies.counterexamples import study as C
from fbsgd import perturbations as P


@pytest.mark.parametrize("a", [0.5, 1.0, 2.0, 4.0])
def test_sigmoid_slope_bias_monte_carlo_matches_closed_forms(a):
    est, se = C.monte_carlo_slope_bias(P.TwoPointNoise(a), 200_000, seed=1)
    assert abs(est - C.two_point_slope_bias(a)) < 5 * se + 1e-12
    est, se = C.monte_carlo_slope_bias(P.UniformNoise(-a, a), 200_000, seed=2)
    assert abs(est - C.uniform_slope_bias(a)) < 5 * se
    assert C.two_point_slope_bias(a) < 0 and C.uniform_slope_bias(a) < 0


@pytest.mark.parametrize("gamma", [0.1, 0.4, 0.5, 0.7, 0.95, 1.05])
def test_quadratic_forward_run_matches_closed_form(gamma):
    x0, delta = 2.0, 0.7
    run = C.quadratic_forward_run(x0, delta, gamma, 60)
    np.testing.assert_allclose(run, C.quadratic_forward_closed_form(x0, delta, gamma, 60), rtol=1e-9, atol=1e-12)
    if C.quadratic_forward_contraction(gamma) < 1:
        assert abs(run[-1] + delta) < 1e-2
    else:
        assert abs(run[-1] + delta) > abs(x0 + delta)


def test_topk_worked_numbers_of_appendix_a3():
    s = 1.7
    w = C.topk_run(C.PAPER_A_PLAIN, 0.1, 1, w1=(s, s), compress=False)
    np.testing.assert_allclose(w[1], 0.0, atol=1e-12)  # w₁⁽²⁾ = 0 after one step
    net = C.topk_net(C.PAPER_A_PLAIN)
    from fbsgd.passes import passes
    p = passes(net, np.ones((1, 2)), np.array([s, s, 0.0, 0.0]))
    np.testing.assert_allclose(p.ys[1][0], [-2 * s, 4 * s])
    np.testing.assert_allclose(p.us[1][0], [10 * s, 10 * s])


def test_uncompressed_plain_example_is_unstable_off_the_special_direction():
    assert C.spectral_radius(C.topk_iteration_matrix(C.PAPER_A_PLAIN, 0.1)) == pytest.approx(48.0)
    w = C.topk_run(C.PAPER_A_PLAIN, 0.1, 30, w1=(1.0, 1.0 + 1e-6), compress=False)
    assert np.linalg.norm(w[-1, :2]) > 1e3


def test_momentum_example_converges_uncompressed_and_not_with_top1():
    rho = C.spectral_radius(C.topk_iteration_matrix(C.PAPER_A_MOMENTUM, 0.05, 0.9))
    assert rho < 1
    w = C.topk_run(C.PAPER_A_MOMENTUM, 0.05, 400, beta=0.9, compress=False)
    assert np.linalg.norm(w[-1, :2]) < 1e-5
    w = C.topk_run(C.PAPER_A_MOMENTUM, 0.05, 400, beta=0.9, compress=True)
    assert np.linalg.norm(w[-1, :2]) > 10


def test_printed_vectors_and_powers_of_ten():
    assert C.vector(np.array([-2.0, 4.0])) == "(\u22122, 4)"
    assert C.vector(np.zeros(2)) == "(0, 0)"
    assert C.power_of_ten(1e8) == "10⁸" and C.power_of_ten(1e-3) == "10⁻³" and C.power_of_ten(1.0) == "10⁰"
    assert C.power_of_ten(2e8) == "2e+08" and C.power_of_ten(5.0) == "5"


def test_scan_ranges_groups_consecutive_equal_outcomes():
    import pandas as pd

    scan = pd.DataFrame(dict(
        setting=["plain"] * 3 + ["momentum"] * 2, gamma=[0.01, 0.02, 0.04, 0.01, 0.02],
        radius_uncompressed=[0.9, 0.95, 1.2, 0.5, 0.5],
        uncompressed=["converges", "converges", "diverges", "converges", "converges"],
        top1=["diverges", "diverges", "diverges", "converges", "converges"]))
    r = C.scan_ranges(scan)
    assert list(r.setting) == ["plain", "plain", "momentum"]
    assert list(r.step_sizes) == [2, 1, 2]
    assert list(r.gamma) == ["0.01 \u2013 0.02", "0.04", "0.01 \u2013 0.02"]
    assert list(r.spectral_radius) == ["0.9 \u2013 0.95", "1.2", "0.5"]
