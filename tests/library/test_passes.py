"""Whole-chain passes: finite differences, zero perturbations, eq. (6a)/(6b), determinism."""
import numpy as np
import pytest

from fbsgd import operators as O
from fbsgd import perturbations as P
from fbsgd.passes import Composite, passes, perturbed_passes
from fbsgd.problems import LogisticRegression, linear_network
from fbsgd.studies.counterexamples.study import topk_net


def _nets():
    r = np.random.default_rng(3)
    tanh_net = Composite([O.Linear(3, 4), O.Tanh(4), O.Linear(4, 4), O.Sigmoid(4), O.Linear(4, 2), O.SquaredNorm(2)])
    lin_net, _ = linear_network([3, 4, 4, 2], scale=1.3)
    lr = LogisticRegression.generate(d=4, M=7)
    return [
        (tanh_net, r.standard_normal((5, 3))),
        (lin_net, r.standard_normal((5, 3))),
        (lr.net, lr.data),
        (topk_net(np.array([[-5.0, -4.0], [-5.0, 3.0]])), r.standard_normal((5, 2))),
    ]


@pytest.mark.parametrize("net,x", _nets(), ids=lambda c: repr(c)[:40] if isinstance(c, Composite) else "")
def test_chain_gradient_matches_finite_differences(net, x):
    w = np.random.default_rng(4).standard_normal(net.weight_size)
    g = passes(net, x, w).gradient()
    h = 1e-6
    fd = np.array([
        (net.value(x, w + h * e).mean() - net.value(x, w - h * e).mean()) / (2 * h)
        for e in np.eye(net.weight_size)
    ])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_intermediate_gradients_are_derivatives_of_the_output():
    """v_i = ∂y_N/∂y_i (eq. 4b), checked by perturbing y_i and re-running the tail."""
    net = Composite([O.Linear(3, 4), O.Tanh(4), O.Linear(4, 1), O.Softplus(1)])
    x = np.random.default_rng(5).standard_normal((2, 3))
    w = np.random.default_rng(6).standard_normal(net.weight_size)
    p = passes(net, x, w)
    ws = net.split(w)
    for i in range(1, len(net)):
        def tail(yi):
            y = yi
            for j in range(i + 1, len(net) + 1):
                y = net.op(j).forward(y, ws[j])
            return y[:, 0]
        h = 1e-6
        fd = np.stack([(tail(p.ys[i] + h * e) - tail(p.ys[i] - h * e)) / (2 * h) for e in np.eye(p.ys[i].shape[1])], axis=1)
        np.testing.assert_allclose(p.vs[i], fd, rtol=1e-6, atol=1e-9)


def test_logistic_gradient_equals_closed_form():
    lr = LogisticRegression.generate(d=5, M=50, rho=0.0)
    w = np.random.default_rng(0).standard_normal(5)
    np.testing.assert_allclose(passes(lr.net, lr.data, w).gradient(), lr.gradient(w), rtol=1e-12, atol=1e-14)


ZERO_PERTURBATIONS = [
    P.UniformNoise(0.0, 0.0),
    P.UniformNoise(0.0, 0.0, per_sample=False),
    P.GaussianNoise(0.0),
    P.Constant(0.0),
    P.every(3, P.UniformNoise(0.0, 0.0)),
    P.chain(P.Constant(0.0), P.UniformNoise(0.0, 0.0)),
    P.at_steps([], P.Constant(5.0)),
    P.TopK(10),
]


@pytest.mark.parametrize("zero", ZERO_PERTURBATIONS, ids=repr)
def test_zero_perturbation_equals_clean_pass_exactly(zero):
    net, x = _nets()[0]
    w = np.random.default_rng(7).standard_normal(net.weight_size)
    clean = passes(net, x, w)
    plan = P.Plan(forward={i: zero for i in range(1, len(net) + 1)}, backward={i: zero for i in range(2, len(net) + 1)})
    state = plan.init(seed=3)
    for _ in range(3):
        pert, state = perturbed_passes(net, x, w, plan, state)
        for a, b in zip(clean.ys + clean.vs[1:] + clean.us[1:], pert.ys + pert.vs[1:] + pert.us[1:]):
            assert np.array_equal(a, b)


def test_accumulative_backward_perturbation_matches_closed_form_6b():
    """Linear network, constant ε_i at every backward step (eq. 6b):
    ṽ_1 − v_1 = Σ_{k=2}^{N} W_2ᵀ⋯W_{k−1}ᵀ ε_k and ũ_1 − u_1 = (ṽ_1 − v_1) xᵀ,
    whereas the additive model (6a) would add ε to u_1 only once."""
    widths = [3, 4, 5, 4, 3]
    net, w = linear_network(widths, scale=1.4, seed=2)
    N = len(net)
    x = np.random.default_rng(8).standard_normal((1, 3))
    r = np.random.default_rng(9)
    eps = {k: r.standard_normal(net.op(k).in_dim) for k in range(2, N + 1)}
    plan = P.Plan(backward={k: P.Constant(eps[k]) for k in eps})
    clean = passes(net, x, w)
    pert, _ = perturbed_passes(net, x, w, plan, plan.init(0))
    Ws = [None] + [wi.reshape(net.op(i).out_dim, net.op(i).in_dim) for i, wi in enumerate(net.split(w)[1:], start=1)]
    expected = np.zeros(widths[1])
    for k in range(2, N + 1):
        term = eps[k]
        for j in range(k - 1, 1, -1):  # W_2ᵀ ⋯ W_{k−1}ᵀ ε_k, innermost first
            term = Ws[j].T @ term
        expected += term
    np.testing.assert_allclose(pert.vs[1][0] - clean.vs[1][0], expected, rtol=1e-12, atol=1e-12)
    du1 = (pert.us[1] - clean.us[1])[0].reshape(widths[1], widths[0])
    np.testing.assert_allclose(du1, np.outer(expected, x[0]), rtol=1e-12, atol=1e-12)


def test_deepest_backward_perturbation_grows_geometrically_with_depth():
    """With ‖W_i‖ = s along the top singular direction, ε_N reaches u_1 amplified by s^{N−2}."""
    d, s = 4, 1.5
    for N in range(2, 8):
        Q = np.eye(d) * s
        net = Composite([O.Linear(d, d) for _ in range(N - 1)] + [O.Linear(d, 1)])
        w = np.concatenate([Q.ravel()] * (N - 1) + [np.ones(d)])
        eps = np.ones(d) / 2
        plan = P.Plan(backward={N: P.Constant(eps)})
        x = np.ones((1, d))
        du1 = perturbed_passes(net, x, w, plan, plan.init(0))[0].us[1] - passes(net, x, w).us[1]
        np.testing.assert_allclose(np.linalg.norm(du1), s ** (N - 2) * np.linalg.norm(eps) * np.linalg.norm(x), rtol=1e-12)


def test_same_seed_same_bits_and_different_seed_different_draws():
    net, x = _nets()[0]
    w = np.random.default_rng(7).standard_normal(net.weight_size)
    plan = P.Plan(forward={1: P.zero_mean_uniform(1.0, 4)}, backward={3: P.GaussianNoise(0.3)})

    def run(seed):
        state = plan.init(seed)
        grads = []
        for _ in range(4):
            p, state = perturbed_passes(net, x, w, plan, state)
            grads.append(p.gradient())
        return np.array(grads)

    a, b, c = run(11), run(11), run(12)
    assert a.tobytes() == b.tobytes()
    assert not np.allclose(a, c)
    assert not np.allclose(a[0], a[1])  # the stream advances with the step


def test_plan_rejects_misplaced_perturbations():
    net, x = _nets()[0]
    w = np.zeros(net.weight_size)
    with pytest.raises(ValueError, match="backward perturbation at operator 1"):
        perturbed_passes(net, x, w, P.Plan(backward={1: P.Constant(0.0)}), {})
    with pytest.raises(ValueError, match="forward perturbation at operator 9"):
        perturbed_passes(net, x, w, P.Plan(forward={9: P.Constant(0.0)}), {})


def test_composite_rejects_mismatched_operators():
    with pytest.raises(ValueError, match="outputs 3 values"):
        Composite([O.Linear(2, 3), O.Linear(4, 1)])
    with pytest.raises(ValueError, match="scalar loss"):
        Composite([O.Linear(2, 3)])


# --- chains ending in a loss that reads labels (issue 22) -------------------------------------------

def _labeled_nets():
    r = np.random.default_rng(21)
    x = r.standard_normal((6, 3))
    softmax = Composite([O.Affine(3, 5), O.ReLU(5), O.Affine(5, 4), O.Tanh(4), O.Affine(4, 3), O.SoftmaxCrossEntropy(3)])
    logistic = Composite([O.Affine(3, 4), O.Sigmoid(4), O.Identity(4), O.Affine(4, 1, bias=False), O.LogisticLoss()])
    return [(softmax, x, np.array([0, 2, 1, 1, 0, 2])), (logistic, x, np.array([1.0, -1.0, -1.0, 1.0, 1.0, -1.0]))]


@pytest.mark.parametrize("net,x,labels", _labeled_nets(), ids=["softmax", "logistic"])
def test_labeled_chain_gradient_matches_finite_differences(net, x, labels):
    w = np.random.default_rng(22).standard_normal(net.weight_size)
    assert net.uses_labels
    g = passes(net, x, w, labels).gradient()
    h = 1e-6
    fd = np.array([(net.value(x, w + h * e, labels).mean() - net.value(x, w - h * e, labels).mean()) / (2 * h)
                   for e in np.eye(net.weight_size)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_a_chain_with_logistic_loss_is_the_section7_logistic_regression():
    """Linear(d → 1) + LogisticLoss on (h, y) gives the loss and gradient of eq. (53) in closed form."""
    lr = LogisticRegression.generate(d=5, M=40, rho=0.0)
    net = Composite([O.Linear(5, 1), O.LogisticLoss()])
    w = np.random.default_rng(23).standard_normal(5)
    np.testing.assert_allclose(net.value(lr.features, w, lr.labels).mean(), lr.loss(w), rtol=1e-14)
    np.testing.assert_allclose(passes(net, lr.features, w, lr.labels).gradient(), lr.gradient(w), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("zero", ZERO_PERTURBATIONS[:4], ids=repr)
def test_zero_perturbation_of_a_labeled_chain_equals_the_clean_pass_exactly(zero):
    net, x, labels = _labeled_nets()[0]
    w = np.random.default_rng(24).standard_normal(net.weight_size)
    clean = passes(net, x, w, labels)
    N = len(net)
    plan = P.Plan(forward={i: zero for i in range(1, N + 1)}, backward={i: zero for i in range(2, N + 1)})
    pert, _ = perturbed_passes(net, x, w, plan, plan.init(seed=1), labels=labels)
    for a, b in zip(clean.ys + clean.vs[1:] + clean.us[1:], pert.ys + pert.vs[1:] + pert.us[1:]):
        assert np.array_equal(a, b)


def test_a_perturbation_before_the_loss_moves_the_gradient_by_the_loss_operators_own_derivative():
    """A constant δ on the scores (forward[N−1]) is the clean pass at shifted scores: the message into the
    scores is softmax(s + δ) − e_y, computed here by hand."""
    net, x, labels = _labeled_nets()[0]
    N = len(net)
    w = np.random.default_rng(25).standard_normal(net.weight_size)
    delta = np.array([0.3, -0.2, 0.1])
    plan = P.Plan(forward={N - 1: P.Constant(delta)})
    pert, _ = perturbed_passes(net, x, w, plan, plan.init(0), labels=labels)
    s = passes(net, x, w, labels).ys[N - 1] + delta
    p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pert.vs[N - 1], p - np.eye(3)[labels], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(pert.ys[N][:, 0], np.log(np.exp(s).sum(axis=1)) - s[np.arange(6), labels], rtol=1e-12)


def test_labels_missing_unexpected_or_of_the_wrong_kind_are_refused_before_anything_runs():
    softmax, x, labels = _labeled_nets()[0]
    logistic, _, pm = _labeled_nets()[1]
    w = np.zeros(softmax.weight_size)
    with pytest.raises(ValueError, match=r"perturbed_passes: the chain ends in SoftmaxCrossEntropy\(3\), which reads one "
                                         r"label per sample: give labels="):
        perturbed_passes(softmax, x, w)
    with pytest.raises(ValueError, match=r"the chain ends in LogisticLoss\(\)"):
        passes(logistic, x, np.zeros(logistic.weight_size))
    lr = LogisticRegression.generate(d=3, M=6)
    with pytest.raises(ValueError, match=r"perturbed_passes: labels were given, but the chain's last operator "
                                         r"Softplus\(1->1\) reads none \(its labels are the last column"):
        passes(lr.net, lr.data, np.zeros(3), pm)
    tanh_net, xt = _nets()[0]
    with pytest.raises(ValueError, match=r"labels were given, but .*SquaredNorm.* reads none; labels reach only"):
        passes(tanh_net, xt, np.zeros(tanh_net.weight_size), np.ones(5))
    for bad, match in ((pm, r"integers 0\.\.2 .*got dtype float64"), (labels[:5], r"one label per sample \(6\)"),
                       (labels + 1, r"2 of 6 are not \(values found: 3\)")):
        with pytest.raises(ValueError, match="perturbed_passes: labels .*" + match):
            passes(softmax, x, w, bad)
    with pytest.raises(ValueError, match=r"perturbed_passes: labels must be \+1 or -1 .*2\*y - 1"):
        passes(logistic, x, np.zeros(logistic.weight_size), (pm + 1) / 2)


def test_a_loss_operator_that_reads_labels_must_be_last():
    with pytest.raises(ValueError, match=r"ops\[1\] = LogisticLoss\(\) is a loss operator that reads the labels; "
                                         r"it must be the last operator of the chain, not operator 2 of 3"):
        Composite([O.Affine(2, 1), O.LogisticLoss(), O.Softplus(1)])


def test_a_chains_canonical_form_is_its_operators_fields():
    a = Composite([O.Affine(3, 4), O.Tanh(4), O.Affine(4, 2), O.SoftmaxCrossEntropy(2)])
    b = Composite([O.Affine(3, 4), O.Tanh(4), O.Affine(4, 2), O.SoftmaxCrossEntropy(2)])
    c = Composite([O.Affine(3, 4), O.ReLU(4), O.Affine(4, 2), O.SoftmaxCrossEntropy(2)])
    d = Composite([O.Affine(3, 4, bias=False), O.Tanh(4), O.Affine(4, 2), O.SoftmaxCrossEntropy(2)])
    assert P.canonical(a) == P.canonical(b) == (
        "Composite([Affine(in_dim=3, out_dim=4, bias=True, gain=1.0, init='gaussian'), Tanh(dim=4), "
        "Affine(in_dim=4, out_dim=2, bias=True, gain=1.0, init='gaussian'), SoftmaxCrossEntropy(classes=2)])")
    e = Composite([O.Affine(3, 4, gain=2.0), O.Tanh(4), O.Affine(4, 2), O.SoftmaxCrossEntropy(2)])
    assert len({P.canonical(a), P.canonical(c), P.canonical(d), P.canonical(e)}) == 4  # the init is part of it
