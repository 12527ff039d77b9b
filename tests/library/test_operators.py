"""Every operator's Jacobian products against central finite differences."""
import numpy as np
import pytest

from fbsgd import operators as O

B = 3


def cases():
    r = np.random.default_rng(0)
    A = r.standard_normal((3, 2))
    x_logistic = np.concatenate([r.standard_normal((B, 4)), r.choice([-1.0, 1.0], (B, 1))], axis=1)
    return [
        (O.Linear(4, 3), r.standard_normal((B, 4))),
        (O.Sigmoid(5), r.standard_normal((B, 5))),
        (O.Tanh(5), r.standard_normal((B, 5))),
        (O.Softplus(1), 3 * r.standard_normal((B, 1))),
        (O.SquaredNorm(4), r.standard_normal((B, 4))),
        (O.SquaredNorm(2, coef=1.0), r.standard_normal((B, 2))),
        (O.Parameter(3, in_dim=2), r.standard_normal((B, 2))),
        (O.LogisticScore(4), x_logistic),
        (O.HadamardMix(A), r.standard_normal((B, 2))),
        (O.QuadraticReadout(3), r.standard_normal((B, 3))),
    ]


@pytest.mark.parametrize("op,y", cases(), ids=lambda c: repr(c) if isinstance(c, O.Operator) else "")
def test_products_match_finite_differences(op, y):
    r = np.random.default_rng(1)
    w = r.standard_normal(op.weight_size)
    out = op.forward(y, w)
    assert out.shape == (B, op.out_dim)
    v = r.standard_normal(out.shape)
    dy = r.standard_normal(y.shape)
    dw = r.standard_normal(op.weight_size)
    h = 1e-6
    # directional derivative of <v, f(y, w)> along dy and dw, per sample
    fd_y = np.sum(v * (op.forward(y + h * dy, w) - op.forward(y - h * dy, w)), axis=1) / (2 * h)
    np.testing.assert_allclose(np.sum(op.vjp_input(y, w, v) * dy, axis=1), fd_y, rtol=1e-6, atol=1e-8)
    fd_w = np.sum(v * (op.forward(y, w + h * dw) - op.forward(y, w - h * dw)), axis=1) / (2 * h)
    vw = op.vjp_weight(y, w, v)
    assert vw.shape == (B, op.weight_size)
    np.testing.assert_allclose(vw @ dw, fd_w, rtol=1e-6, atol=1e-8)
    # forward mode: jvp against the same differences
    fd_both = (op.forward(y + h * dy, w + h * dw) - op.forward(y - h * dy, w - h * dw)) / (2 * h)
    np.testing.assert_allclose(op.jvp(y, w, dy, dw), fd_both, rtol=1e-6, atol=1e-8)


def test_topk_example_operators_match_paper_formulas():
    """Appendix A.3: f₁ = A(x⊙w₁) and u₂ = 2⟨y₁,w₂⟩y₁, v₁ = 2⟨y₁,w₂⟩w₂ + y₁ (eq. 56)."""
    A = np.array([[-15.0, 13.0], [-5.0, 9.0]])
    x = np.array([[1.0, 2.0]])
    w1 = np.array([0.3, -0.7])
    y1 = O.HadamardMix(A).forward(x, w1)
    np.testing.assert_allclose(y1[0], [A[0, 0] * 1 * 0.3 + A[0, 1] * 2 * -0.7, A[1, 0] * 0.3 + A[1, 1] * 2 * -0.7])
    w2 = np.array([0.5, 0.25])
    q = O.QuadraticReadout(2)
    s = y1[0] @ w2
    np.testing.assert_allclose(q.vjp_weight(y1, w2, np.ones((1, 1)))[0], 2 * s * y1[0])
    np.testing.assert_allclose(q.vjp_input(y1, w2, np.ones((1, 1)))[0], 2 * s * w2 + y1[0])
