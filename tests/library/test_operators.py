"""Every operator's Jacobian products against central finite differences."""
import numpy as np
import pytest

from fbsgd import operators as O
from tests.conftest import central_difference

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
        (O.Affine(4, 3), r.standard_normal((B, 4))),
        (O.Affine(4, 3, bias=False), r.standard_normal((B, 4))),
        (O.ReLU(5), _away_from_zero(r, (B, 5))),
        (O.Identity(4), r.standard_normal((B, 4))),
    ]


def _away_from_zero(r, shape):
    """Entries with |y| >= 0.1, so a difference of step 1e-6 never crosses ReLU's kink."""
    return r.choice([-1.0, 1.0], shape) * (0.1 + np.abs(r.standard_normal(shape)))


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


# --- the chain operators of issue 22: Affine, ReLU, Identity and the loss operators that read labels -----

def loss_cases():
    r = np.random.default_rng(2)
    return [
        (O.LogisticLoss(), 3 * r.standard_normal((B, 1)), np.array([1.0, -1.0, 1.0])),
        (O.LogisticLoss(), 3 * r.standard_normal((B, 1)), np.array([-1, -1, 1])),  # integer ±1 labels read alike
        (O.SoftmaxCrossEntropy(4), 2 * r.standard_normal((B, 4)), np.array([0, 3, 1])),
        (O.SoftmaxCrossEntropy(2), r.standard_normal((B, 2)), np.array([1, 1, 0])),
    ]


@pytest.mark.parametrize("op,y,labels", loss_cases(), ids=lambda c: repr(c) if isinstance(c, O.Operator) else "")
def test_loss_products_match_finite_differences(op, y, labels):
    assert op.uses_labels and op.weight_size == 0
    r = np.random.default_rng(3)
    w = np.zeros(0)
    out = op.forward(y, w, labels=labels)
    assert out.shape == (B, 1)
    v = r.standard_normal(out.shape)
    dy = r.standard_normal(y.shape)
    h = 1e-6
    f = lambda z: op.forward(z, w, labels=labels)  # noqa: E731
    fd_y = np.sum(v * (f(y + h * dy) - f(y - h * dy)), axis=1) / (2 * h)
    np.testing.assert_allclose(np.sum(op.vjp_input(y, w, v, labels=labels) * dy, axis=1), fd_y, rtol=1e-6, atol=1e-8)
    assert op.vjp_weight(y, w, v, labels=labels).shape == (B, 0)
    np.testing.assert_allclose(op.jvp(y, w, dy, w, labels=labels), (f(y + h * dy) - f(y - h * dy)) / (2 * h),
                               rtol=1e-6, atol=1e-8)
    # the whole input gradient, coordinate by coordinate, with the conftest helper
    for b in range(B):
        fd = central_difference(lambda row: op.forward(row[None, :], w, labels=labels[b:b + 1])[0, 0], y[b])
        np.testing.assert_allclose(op.vjp_input(y[b:b + 1], w, np.ones((1, 1)), labels=labels[b:b + 1])[0], fd,
                                   rtol=1e-6, atol=1e-8)


def test_only_the_loss_operators_read_labels():
    assert O.Operator.uses_labels is False
    for op in (O.Affine(2, 3), O.ReLU(2), O.Identity(2), O.Tanh(2), O.Sigmoid(2), O.Linear(2, 1), O.Softplus(1)):
        assert op.uses_labels is False
    assert O.LogisticLoss().uses_labels is True and O.SoftmaxCrossEntropy(3).uses_labels is True


def test_affine_is_w_y_plus_b_with_w_row_major_then_b():
    A = O.Affine(3, 2)
    assert A.weight_size == 3 * 2 + 2 and O.Affine(3, 2, bias=False).weight_size == 6
    W = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    b = np.array([0.5, -1.0])
    y = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.5]])
    expected = np.array([[1 - 3 + 0.5, 4 - 6 - 1.0], [2 + 2 + 1.5 + 0.5, 8 + 5 + 3 - 1.0]])
    np.testing.assert_array_equal(A.forward(y, np.concatenate([W.ravel(), b])), expected)
    # without the bias it is Linear, bit for bit
    np.testing.assert_array_equal(O.Affine(3, 2, bias=False).forward(y, W.ravel()), O.Linear(3, 2).forward(y, W.ravel()))
    # per-sample weight gradient of <v, W y + b>: v yᵀ (row-major) then v
    v = np.array([[1.0, -2.0], [0.5, 3.0]])
    u = A.vjp_weight(y, np.concatenate([W.ravel(), b]), v)
    for s in range(2):
        np.testing.assert_array_equal(u[s], np.concatenate([np.outer(v[s], y[s]).ravel(), v[s]]))


def test_affine_initial_weight_is_normal_with_variance_one_over_in_dim_and_zero_bias():
    in_dim, out_dim = 64, 100
    w = O.Affine(in_dim, out_dim).init_weight(np.random.default_rng(0))
    W, b = w[: in_dim * out_dim], w[in_dim * out_dim:]
    assert b.shape == (out_dim,) and np.all(b == 0.0)
    # 6400 draws: the sample standard deviation is within 5 % of 1/√64 = 0.125 (its own error is ≈ 0.9 %)
    assert abs(W.std() / 0.125 - 1) < 0.05 and abs(W.mean()) < 4 * 0.125 / np.sqrt(W.size)
    assert O.Affine(in_dim, out_dim, bias=False).init_weight(np.random.default_rng(0)).shape == (in_dim * out_dim,)


def test_relu_and_identity_closed_forms():
    y = np.array([[-2.0, -0.0, 0.0, 1e-300, 3.5]])
    v = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    r = O.ReLU(5)
    np.testing.assert_array_equal(r.forward(y, None), [[0.0, 0.0, 0.0, 1e-300, 3.5]])
    np.testing.assert_array_equal(r.vjp_input(y, None, v), [[0.0, 0.0, 0.0, 4.0, 5.0]])  # derivative 0 at 0
    np.testing.assert_array_equal(r.jvp(y, None, v, None), [[0.0, 0.0, 0.0, 4.0, 5.0]])
    i = O.Identity(5)
    out = i.forward(y, None)
    np.testing.assert_array_equal(out, y)
    assert out is not y  # a new array: a forward perturbation of it leaves the input alone
    np.testing.assert_array_equal(i.vjp_input(y, None, v), v)


def test_logistic_loss_closed_form_and_stability():
    s = np.array([[-3.0], [0.0], [2.0], [800.0], [-800.0]])
    lab = np.array([1.0, -1.0, -1.0, -1.0, -1.0])
    op = O.LogisticLoss()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow, at scores of any size
        out = op.forward(s, None, labels=lab)[:, 0]
        g = op.vjp_input(s, None, np.ones((5, 1)), labels=lab)[:, 0]
    np.testing.assert_allclose(out[:3], np.log1p(np.exp(-lab[:3] * s[:3, 0])), rtol=1e-15)
    assert out[3] == 800.0 and 0.0 <= out[4] < 1e-300  # ln(1 + e^800) = 800 to rounding; ln(1 + e^-800) ≈ 0
    np.testing.assert_allclose(g[:3], -lab[:3] / (1 + np.exp(lab[:3] * s[:3, 0])), rtol=1e-14)  # −y σ(−y s)
    assert g[3] == 1.0 and abs(g[4]) < 1e-300


def test_softmax_cross_entropy_closed_form_and_stability():
    s = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    lab = np.array([2, 0])
    op = O.SoftmaxCrossEntropy(3)
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(op.forward(s, None, labels=lab)[:, 0], -np.log(p[[0, 1], lab]), rtol=1e-14)
    grad = op.vjp_input(s, None, np.ones((2, 1)), labels=lab)
    np.testing.assert_allclose(grad, p - np.eye(3)[lab], rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-15)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # shifting every score by 1000 changes nothing and overflows nothing
        np.testing.assert_allclose(op.forward(s + 1000.0, None, labels=lab), op.forward(s, None, labels=lab), rtol=1e-12)
        np.testing.assert_allclose(op.vjp_input(s - 1000.0, None, np.ones((2, 1)), labels=lab), grad, atol=1e-13)


def test_two_class_softmax_is_the_logistic_loss():
    """logsumexp(0, s) − s_y: class 1 gives ln(1 + e^{−s}) (label +1), class 0 gives ln(1 + e^{s}) (label −1)."""
    s = np.array([-4.0, -0.3, 0.0, 1.7, 25.0])
    logits = np.stack([np.zeros_like(s), s], axis=1)
    for cls, sign in ((1, 1.0), (0, -1.0)):
        lab = np.full(s.size, cls)
        soft = O.SoftmaxCrossEntropy(2).forward(logits, None, labels=lab)[:, 0]
        logi = O.LogisticLoss().forward(s[:, None], None, labels=np.full(s.size, sign))[:, 0]
        np.testing.assert_allclose(soft, logi, rtol=1e-14, atol=1e-300)


def test_loss_operators_need_labels_and_new_operators_refuse_bad_sizes():
    with pytest.raises(ValueError, match=r"LogisticLoss\(\)\.forward: labels=\.\.\. is required"):
        O.LogisticLoss().forward(np.zeros((2, 1)), None)
    with pytest.raises(ValueError, match=r"SoftmaxCrossEntropy\(3\)\.vjp_input: labels=\.\.\. is required"):
        O.SoftmaxCrossEntropy(3).vjp_input(np.zeros((2, 3)), None, np.ones((2, 1)))
    for bad in (1, 0, 2.0, True, "3"):
        with pytest.raises(ValueError, match="SoftmaxCrossEntropy needs an integer classes >= 2"):
            O.SoftmaxCrossEntropy(bad)
    with pytest.raises(ValueError, match="Affine needs an integer in_dim >= 1"):
        O.Affine(0, 2)
    with pytest.raises(ValueError, match="Affine needs bias True or False"):
        O.Affine(2, 2, bias="yes")
    with pytest.raises(ValueError, match="ReLU needs an integer dim >= 1"):
        O.ReLU(0)


@pytest.mark.parametrize("op,labels,match", [
    (O.LogisticLoss(), np.array([0.0, 1.0]), r"must be \+1 or -1 .*2\*y - 1"),
    (O.LogisticLoss(), np.array([0, 2]), r"must be \+1 or -1 .*SoftmaxCrossEntropy"),
    (O.LogisticLoss(), np.array([1.0, -1.0, 1.0]), r"one label per sample \(2\), got shape \(3,\)"),
    (O.LogisticLoss(), np.array(["a", "b"]), r"must be \+1 or -1 .*got dtype <U1"),
    (O.SoftmaxCrossEntropy(3), np.array([0.0, 2.0]), r"integers 0\.\.2 .*got dtype float64; convert them with labels\.astype"),
    (O.SoftmaxCrossEntropy(3), np.array([1.0, -1.0]), r"integers 0\.\.2 .*±1 labels go with LogisticLoss"),
    (O.SoftmaxCrossEntropy(3), np.array([0, 3]), r"integers 0\.\.2 .*1 of 2 are not \(values found: 3\)"),
    (O.SoftmaxCrossEntropy(3), np.array([[0, 1]]), r"one label per sample \(2\), got shape \(1, 2\)"),
    (O.SoftmaxCrossEntropy(3), None, r"are missing"),
])
def test_check_labels_refuses_labels_of_the_wrong_kind_or_count(op, labels, match):
    with pytest.raises(ValueError, match="^who: labels .*" + match):
        op.check_labels(labels, 2, "who")


def test_linear_and_affine_default_initial_weights_are_the_draws_over_sqrt_in_dim():
    for op, size in ((O.Linear(5, 3), 15), (O.Affine(5, 3, bias=False), 15)):
        want = np.random.default_rng(7).standard_normal(size) / np.sqrt(5)
        np.testing.assert_array_equal(op.init_weight(np.random.default_rng(7)), want)


@pytest.mark.parametrize("make", [lambda **k: O.Linear(300, 200, **k), lambda **k: O.Affine(300, 200, **k)])
def test_gain_scales_the_standard_deviation_of_the_initial_matrix(make):
    W = make(gain=2.5).init_weight(np.random.default_rng(3))[: 300 * 200]
    # 60,000 entries of N(0, 2.5²/300): the sample std is within 2 % (its relative sd is 0.3 %)
    assert np.std(W) == pytest.approx(2.5 / np.sqrt(300), rel=0.02)
    assert abs(np.mean(W)) < 5 * 2.5 / np.sqrt(300) / np.sqrt(W.size)


def test_unit_norm_initial_matrix_has_frobenius_norm_gain_and_affine_keeps_a_zero_bias():
    for gain in (1.0, 0.3):
        W = O.Linear(7, 4, gain=gain, init="unit_norm").init_weight(np.random.default_rng(1))
        assert np.linalg.norm(W) == pytest.approx(gain, rel=1e-14)
        w = O.Affine(7, 4, gain=gain, init="unit_norm").init_weight(np.random.default_rng(1))
        assert np.linalg.norm(w[:28]) == pytest.approx(gain, rel=1e-14) and not w[28:].any()
    g = np.random.default_rng(2).standard_normal(6)  # the same draws, scaled
    np.testing.assert_allclose(O.Linear(6, 1, init="unit_norm").init_weight(np.random.default_rng(2)), g / np.linalg.norm(g))


@pytest.mark.parametrize("cls", [O.Linear, O.Affine])
@pytest.mark.parametrize("kw, field", [(dict(gain=0.0), "gain"), (dict(gain=-1.0), "gain"), (dict(gain=float("nan")), "gain"),
                                       (dict(gain=float("inf")), "gain"), (dict(gain=True), "gain"), (dict(gain="2"), "gain"),
                                       (dict(init="xavier"), "init"), (dict(init=None), "init")])
def test_bad_gain_or_init_is_refused_naming_the_field(cls, kw, field):
    with pytest.raises(ValueError, match=rf"{cls.__name__} needs .*{field}"):
        cls(3, 2, **kw)


@pytest.mark.parametrize("make", [lambda: O.Linear(4, 3, gain=2.0, init="zeros"), lambda: O.Affine(4, 3, init="zeros")])
def test_zeros_initial_matrix_is_zero_and_draws_nothing(make):
    rng = np.random.default_rng(5)
    w = make().init_weight(rng)
    assert w.shape == (make().weight_size,) and not w.any()
    assert rng.standard_normal() == np.random.default_rng(5).standard_normal()  # the stream was not advanced
