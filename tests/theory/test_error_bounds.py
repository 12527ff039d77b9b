"""The constants of Section 4 against hand computations, and the operator constants
against direct evaluations of the Jacobians they bound."""
import math

import numpy as np
import pytest

from fbsgd.theory import error_bounds as B
from fbsgd import operators as O
from fbsgd import perturbations as P

# Case A: N = 2, C∇f = 2, C∇²f = 0.5, L_f = 1.5, L∇f = 1, L∇²f = 3.
KA = B.Constants(C_grad=2.0, C_hess=0.5, L_f=1.5, L_grad=1.0, L_hess=3.0)
# Case B: N = 3, every constant 1.
KB = B.Constants(1.0, 1.0, 1.0, 1.0, 1.0)


def test_lemma1_cv():
    assert B.c_v(2.0, 2) == 4.0
    assert B.c_v(0.5, 10) == 1.0  # never below 1
    assert B.c_v(1.1, 3) == pytest.approx(1.331)


def test_geometric_sum():
    assert B.geometric_sum(3.0, 0, 2) == 13.0
    assert B.geometric_sum(3.0, 1, 2) == 12.0
    assert B.geometric_sum(3.0, 2, 1) == 0.0


def test_case_a_n2_by_hand():
    # C_v = 4, C_v² = 16, 3C² = 12, 2L_f² = 4.5
    assert B.c_e_delta(1, 2, KA) == pytest.approx(4 * 16 * 1 * (1 + 12))  # 832
    assert B.c_e_eps(2, 2, KA) == pytest.approx(12)
    assert B.c_e_eps(2, 2, KA, variant="derivation") == pytest.approx(24)
    # C²_{y_1}: first sum is empty (j from 2 to 1), second = 2·9·16·(1 + 12)
    assert B.c_y_sq(1, 2, KA) == pytest.approx(3744)
    assert B.c_b_delta(1, 2, KA) == pytest.approx(8 * 9 * 16 * 13)  # printed: L∇²f² = 9
    assert B.c_b_delta(1, 2, KA, variant="derivation") == pytest.approx(8 * 0.25 * 16 * 13)  # C∇²f² = 0.25
    assert B.c_b_eps(2, 2, KA) == pytest.approx(24)
    assert B.c_tilde_b_delta(1, 2, KA) == pytest.approx(8 * 3744)


def test_case_b_n3_by_hand():
    # C_v = 1, 3C² = 3, 2L_f² = 2, 4C² = 4, 8L_f⁴ = 8
    assert B.c_e_delta(1, 3, KB) == pytest.approx(4 * ((1 + 3) + (1 + 3 + 9) * 2))  # 120
    assert B.c_e_delta(2, 3, KB) == pytest.approx(4 * 13)
    assert B.c_e_eps(2, 3, KB) == pytest.approx(3)
    assert B.c_e_eps(3, 3, KB) == pytest.approx(3 + 9)
    assert B.c_y_sq(1, 3, KB) == pytest.approx(8 * 13 + 2 * 4)  # 112
    assert B.c_y_sq(2, 3, KB) == pytest.approx(2 * 13)
    assert B.c_b_delta(1, 3, KB) == pytest.approx(8 * (4 + 13 * 4))  # 448
    assert B.c_b_delta(2, 3, KB) == pytest.approx(8 * 13)
    assert B.c_b_eps(2, 3, KB) == pytest.approx(6)
    assert B.c_b_eps(3, 3, KB) == pytest.approx(24)
    assert B.c_tilde_b_delta(1, 3, KB) == pytest.approx(8 * (112 + 26 * 8))  # 2560
    assert B.c_tilde_b_delta(2, 3, KB) == pytest.approx(8 * 26)


def test_case_c_n3_unequal_constants():
    K = B.Constants(C_grad=2.0, C_hess=0.0, L_f=0.5, L_grad=2.0, L_hess=0.0)
    # C_v = 8, 3C² = 12, 2L_f² = 0.5: 4·64·4·[13 + 157·0.5]
    assert B.c_e_delta(1, 3, K) == pytest.approx(1024 * 91.5)
    assert B.c_tilde_b_delta(1, 3, K) == 0.0 and B.c_b_delta(1, 3, K) == 0.0


def test_right_hand_sides_by_hand():
    assert B.mse_bound(3, KB, delta_sq={1: 0.1}, eps_sq={3: 0.2}) == pytest.approx(120 * 0.1 + 12 * 0.2)
    assert B.mse_bound(3, KB, eps_sq={3: 0.2}, variant="derivation") == pytest.approx(24 * 0.2)
    assert B.bias_bound(3, KB, delta_mean_sq={2: 0.5}, delta_fourth={1: 0.01}, eps_mean_sq={2: 1.0}) == pytest.approx(
        104 * 0.5 + 2560 * 0.01 + 6 * 1.0)
    assert B.mse_bound(3, KB) == 0.0


def test_coefficients_grow_with_depth_and_order_with_location():
    K = B.Constants(1.2, 1.0, 1.2, 1.0, 1.0)
    for N in range(3, 9):
        assert B.c_e_delta(1, N + 1, K) > B.c_e_delta(1, N, K)
        assert [B.c_e_delta(i, N, K) for i in range(1, N)] == sorted((B.c_e_delta(i, N, K) for i in range(1, N)), reverse=True)
        assert [B.c_e_eps(k, N, K) for k in range(2, N + 1)] == sorted(B.c_e_eps(k, N, K) for k in range(2, N + 1))


@pytest.mark.parametrize("bad", [
    lambda: B.c_e_delta(0, 3, KB), lambda: B.c_e_delta(3, 3, KB), lambda: B.c_e_eps(1, 3, KB),
    lambda: B.c_e_eps(4, 3, KB), lambda: B.c_b_delta(1, 3, KB, variant="typo"), lambda: B.c_e_delta(1, 1, KB),
    lambda: B.Constants(-1.0, 0, 0, 0, 0),
])
def test_rejects_out_of_range(bad):
    with pytest.raises(ValueError):
        bad()


def test_moments_by_hand():
    m = B.perturbation_moments(P.UniformNoise(-1.0, 1.0), 2)
    assert m.mean_sq == 0.0 and m.second == pytest.approx(2 / 3)
    assert m.fourth == pytest.approx(2 / 5 + 2 / 9)  # d E δ⁴ + d(d-1)(E δ²)²
    m = B.perturbation_moments(P.UniformNoise(0.0, 2.0), 1)
    assert m.mean_sq == pytest.approx(1.0) and m.second == pytest.approx(4 / 3) and m.fourth == pytest.approx(16 / 5)
    m = B.perturbation_moments(P.GaussianNoise(std=2.0, mean=1.0), 1)
    assert (m.mean_sq, m.second, m.fourth) == pytest.approx((1.0, 5.0, 1 + 6 * 4 + 3 * 16))
    m = B.perturbation_moments(P.TwoPointNoise(0.5), 3)
    assert (m.mean_sq, m.second, m.fourth) == pytest.approx((0.0, 0.75, 0.75**2))  # ‖δ‖² = 3a² exactly
    m = B.perturbation_moments(P.Constant(np.array([3.0, 4.0])), 2)
    assert (m.mean_sq, m.second, m.fourth) == pytest.approx((25.0, 25.0, 625.0))
    with pytest.raises(ValueError):
        B.perturbation_moments(P.GaussianNoise(1.0, per_sample=False), 2)


def test_moments_match_sampling():
    rng = np.random.default_rng(0)
    d, a = 5, 0.7
    z = rng.uniform(-a, a, size=(400_000, d))
    n2 = (z * z).sum(1)
    m = B.perturbation_moments(P.UniformNoise(-a, a), d)
    assert n2.mean() == pytest.approx(m.second, rel=5e-3)
    assert (n2**2).mean() == pytest.approx(m.fourth, rel=1e-2)


def _weight_jacobian(op, y, w):
    """Full Jacobian ∇₂f(y) (d_out × d_w) assembled from vjp_weight with unit cotangents."""
    return np.stack([op.vjp_weight(y[None, :], w, e[None, :])[0] for e in np.eye(op.out_dim)])


def test_linear_constants_against_jacobians():
    rng = np.random.default_rng(1)
    op = O.Linear(4, 3)
    W = rng.standard_normal((3, 4))
    y = rng.standard_normal(4)
    J2 = _weight_jacobian(op, y, W.ravel())
    assert np.linalg.norm(J2, 2) == pytest.approx(np.linalg.norm(y))  # ‖∇₂f(y)‖_op = ‖y‖
    y2 = rng.standard_normal(4)
    D = _weight_jacobian(op, y2, W.ravel()) - J2
    assert np.linalg.norm(D, 2) == pytest.approx(np.linalg.norm(y2 - y))  # op-norm Lipschitz 1
    assert np.linalg.norm(D) == pytest.approx(math.sqrt(3) * np.linalg.norm(y2 - y))  # Frobenius: √d_out
    k = B.linear_constants(W, input_norm_max=10.0)
    assert k.C_grad == 10.0 and k.L_f == pytest.approx(np.linalg.norm(W, 2))
    assert (k.L_grad, k.C_hess, k.L_hess) == (1.0, 1.0, 0.0)
    kf = B.linear_constants(W, input_norm_max=0.1, norm="frobenius")
    assert kf.C_grad == pytest.approx(np.linalg.norm(W, 2)) and kf.L_grad == pytest.approx(math.sqrt(3))


def test_elementwise_constants_known_maxima():
    k = B.elementwise_constants("tanh", [-5.0], [5.0])
    assert (k.C_grad, k.C_hess, k.L_hess) == pytest.approx((1.0, 4 / (3 * math.sqrt(3)), 2.0))
    k = B.elementwise_constants("sigmoid", [-10.0, -1.0], [10.0, 1.0])
    assert (k.C_grad, k.C_hess, k.L_hess) == pytest.approx((0.25, 1 / (6 * math.sqrt(3)), 1 / 8))
    # away from 0 the derivatives are smaller: on [1, 2], |tanh'| peaks at 1
    k = B.elementwise_constants("tanh", [1.0], [2.0])
    assert k.C_grad == pytest.approx(1 - math.tanh(1.0) ** 2) and k.L_f == k.C_grad
    t = math.tanh(1.0)
    assert k.C_hess == pytest.approx(2 * t * (1 - t**2))  # |tanh''| is decreasing on [1, 2]


# the moments are read off the perturbation's law (fbsgd.perturbations' protocol)

def test_moments_pin_the_closed_forms_of_each_law():
    a, b, d = -0.3, 0.7, 7
    assert B.perturbation_moments(P.UniformNoise(a, b), d) == B._iid_moments(
        d, 0.5 * (a + b), (a**2 + a * b + b**2) / 3.0, (b**5 - a**5) / (5 * (b - a)))
    assert B.perturbation_moments(P.UniformNoise(0.2, 0.2), d) == B._iid_moments(d, 0.2, 0.2**2 * 3 / 3.0, 0.2**4)
    m, s = 0.11, 0.37
    assert B.perturbation_moments(P.GaussianNoise(s, m), d) == B._iid_moments(
        d, m, m**2 + s**2, m**4 + 6 * m**2 * s**2 + 3 * s**4)
    assert B.perturbation_moments(P.TwoPointNoise(0.31), d) == B._iid_moments(d, 0.0, 0.31**2, 0.31**4)
    v = np.broadcast_to(np.asarray(0.1), (d,))  # a scalar constant: ‖δ‖² summed as before
    assert B.perturbation_moments(P.Constant(0.1), d) == (float(v @ v), float(v @ v), float(v @ v) ** 2)
    assert B.perturbation_moments(P.Identity(), d) == (0.0, 0.0, 0.0)


def test_moments_of_a_wrapper_are_those_of_its_law_where_it_acts():
    u = P.UniformNoise(0.0, 1.0)
    for p in (P.every(3, u), P.every(4, u, offset=2), P.at_steps([1, 5, 6], u), P.budget(3, 30, u), P.chain(u)):
        assert B.perturbation_moments(p, 5) == B.perturbation_moments(u, 5)


def test_moments_refuse_what_the_law_does_not_give():
    with pytest.raises(ValueError, match="moments per sample need a per_sample perturbation"):
        B.perturbation_moments(P.every(2, P.UniformNoise(-1.0, 1.0, per_sample=False)), 3)
    for p in (P.chain(P.UniformNoise(0.0, 1.0), P.GaussianNoise(0.1)),  # a sum: E δ⁴ unknown
              P.TopK(1), P.ErrorFeedback(P.TopK(1)), P.every(2, P.Constant(np.array([1.0, 2.0])))):
        with pytest.raises(NotImplementedError, match=f"no closed-form moments for {type(p).__name__}"):
            B.perturbation_moments(p, 2)


# the right-hand sides refuse what no moment can be

def test_bounds_can_no_longer_receive_a_negative_moment():
    # the probe: a second moment of −10 gave a bound of −1200 on a squared error
    with pytest.raises(ValueError, match=r"delta_sq\[1\] must be a finite number >= 0 .*got -10"):
        B.mse_bound(3, KB, delta_sq={1: -10.0})
    with pytest.raises(ValueError, match=r"eps_sq\[3\]"):
        B.mse_bound(3, KB, eps_sq={3: math.inf})
    with pytest.raises(ValueError, match=r"eps_mean_sq\[2\]"):
        B.bias_bound(3, KB, eps_mean_sq={2: math.nan})
    with pytest.raises(ValueError, match=r"delta_fourth\[1\]"):
        B.bias_bound(3, KB, delta_fourth={1: -1e-9})
    with pytest.raises(ValueError, match="second_moment must be >= 0"):  # nor can a law carry one
        P.Law("uniform", True, True, 0.0, -10.0)


# the moments from the law given the input (any mechanism)

def test_conditional_moments_of_additive_noise_are_the_closed_forms():
    x = np.linspace(-2.0, 2.0, 7)
    for p in (P.UniformNoise(-0.3, 0.7), P.GaussianNoise(0.4, 0.1), P.TwoPointNoise(0.25)):
        np.testing.assert_allclose(B.conditional_moments(p, x), B.perturbation_moments(p, x.size), rtol=1e-13)


def test_conditional_moments_of_rounding_to_nearest_are_its_deterministic_error():
    import ml_dtypes

    x = np.random.default_rng(3).standard_normal(50) * 3
    d = x.astype(ml_dtypes.float8_e4m3fn).astype(float) - x  # δ is a function of x: bias = δ
    m = B.conditional_moments(P.Round("float8_e4m3fn"), x)
    assert m.mean_sq == pytest.approx(d @ d, rel=1e-14) and m.second == pytest.approx(d @ d, rel=1e-14)
    assert m.fourth == pytest.approx((d @ d) ** 2, rel=1e-13)
    s = B.conditional_moments(P.Round("float8_e4m3fn", "stochastic"), x)
    assert s.mean_sq == pytest.approx(0.0, abs=1e-28) and s.second > m.second  # unbiased, larger variance


def test_conditional_moments_of_randk_come_from_the_joint_law():
    import itertools

    x = np.array([[1.0, -2.0, 3.0, 0.5]])
    k, n = 2, 4
    subsets = list(itertools.combinations(range(n), k))  # equally likely
    norms = []
    for s in subsets:
        kept = np.isin(np.arange(n), s)
        delta = np.where(kept, x[0] * (n / k - 1), -x[0])
        norms.append(delta @ delta)
    norms = np.array(norms)
    m = B.conditional_moments(P.RandK(k), x, draws=20_000, seed=4)
    assert m.second == pytest.approx(norms.mean(), rel=0.03)
    assert m.fourth == pytest.approx((norms**2).mean(), rel=0.05)
    assert m.mean_sq == pytest.approx(0.0, abs=0.05 * norms.mean())  # unbiased


def test_bounds_given_inputs_are_the_right_hand_sides_with_those_moments():
    x1 = np.linspace(-1, 1, 6)
    x2 = np.linspace(0.1, 0.9, 6)
    p1, p2 = P.Round("bfloat16"), P.UniformNoise(0.0, 0.01)
    r = B.bounds_given_inputs(3, KB, forward={1: (p1, x1)}, backward={3: (p2, x2)})
    m1, m2 = B.conditional_moments(p1, x1), B.conditional_moments(p2, x2)
    assert r["mse"] == pytest.approx(B.c_e_delta(1, 3, KB) * m1.second + B.c_e_eps(3, 3, KB) * m2.second, rel=1e-14)
    assert r["bias"] == pytest.approx(B.c_b_delta(1, 3, KB) * m1.mean_sq + B.c_tilde_b_delta(1, 3, KB) * m1.fourth
                                      + B.c_b_eps(3, 3, KB) * m2.mean_sq, rel=1e-14)
    assert r["moments"][("forward", 1)] == m1
    with pytest.raises(ValueError, match=r"forward\[1\] must be \(perturbation, inputs\)"):
        B.bounds_given_inputs(3, KB, forward={1: p1})


def test_a_biased_quantizer_declaring_tiny_moments_gets_its_true_ones():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Liar(P.Perturbation):
        def apply(self, x, key, step):
            return np.round(np.asarray(x) * 4) / 4

        @property
        def law(self):
            return P.Law("input_dependent", False, True, 0.0, 1e-6)

    x = np.linspace(-1, 1, 41) + 0.05
    d = np.round(x * 4) / 4 - x
    m = B.conditional_moments(Liar(), x)
    assert m.second == pytest.approx(d @ d, rel=1e-14) and m.mean_sq == pytest.approx(d @ d, rel=1e-14)
    assert m.second > 1e-6 * x.size * 100
