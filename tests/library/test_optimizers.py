"""Adam against steps computed by hand from Kingma & Ba (2015), Algorithm 1."""
import math

import numpy as np
import pytest

from fbsgd.optimizers import SGD, Adam, HeavyBall


def test_first_step_is_lr_times_sign():
    # t = 1: m̂ = g, v̂ = g², so the step is lr·g/(|g| + eps)
    opt = Adam(lr=0.1, eps=1e-8)
    g = np.array([3.0, -0.5, 0.0])
    step, state = opt.update(g, opt.init(np.zeros(3)), np.zeros(3))
    np.testing.assert_allclose(step, [0.1 * 3 / (3 + 1e-8), -0.1 * 0.5 / (0.5 + 1e-8), 0.0], rtol=1e-15)
    assert state.count == 1


def test_two_steps_by_hand():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    opt = Adam(lr, b1, b2, eps)
    g1, g2 = 2.0, -1.0
    # by hand, one coordinate
    m1, v1 = (1 - b1) * g1, (1 - b2) * g1**2  # 0.2, 0.004
    m2, v2 = b1 * m1 + (1 - b1) * g2, b2 * v1 + (1 - b2) * g2**2  # 0.08, 0.004996
    mh, vh = m2 / (1 - b1**2), v2 / (1 - b2**2)  # 0.42105..., 2.4992...
    expected = lr * mh / (math.sqrt(vh) + eps)
    assert abs(m2 - 0.08) < 1e-15 and abs(v2 - 0.004996) < 1e-15
    assert abs(expected - 0.01 * (0.08 / 0.19) / (math.sqrt(0.004996 / 0.001999) + 1e-8)) < 1e-15
    state = opt.init(np.zeros(1))
    _, state = opt.update(np.array([g1]), state, np.zeros(1))
    step, state = opt.update(np.array([g2]), state, np.zeros(1))
    assert step[0] == pytest.approx(expected, rel=1e-13)
    assert step[0] == pytest.approx(0.00266337, rel=1e-5)  # 0.01 · 0.4210526 / 1.5809015
    assert state.count == 2


def test_steps_are_invariant_to_gradient_scale_and_bounded_by_lr():
    opt = Adam(lr=0.05, eps=0.0)
    r = np.random.default_rng(0)
    gs = r.standard_normal((20, 4))
    s1, s2 = opt.init(np.zeros(4)), opt.init(np.zeros(4))
    for g in gs:
        a, s1 = opt.update(g, s1, None)
        b, s2 = opt.update(1000.0 * g, s2, None)
        np.testing.assert_allclose(a, b, rtol=1e-12)
        # |m̂/√v̂| ≤ (1 − β1)/√(1 − β2)·(bias corrections) — a loose check that steps stay O(lr)
        assert np.all(np.abs(a) <= 0.05 * 3.2)


def test_adam_minimizes_a_quadratic():
    opt = Adam(lr=0.05)
    w = np.array([3.0, -2.0])
    state = opt.init(w)
    for _ in range(2000):
        step, state = opt.update(np.array([1.0, 10.0]) * w, state, w)
        w = w - step
    assert np.linalg.norm(w) < 1e-2


def test_bad_hyperparameters_are_rejected():
    with pytest.raises(ValueError):
        Adam(lr=0.0)
    with pytest.raises(ValueError):
        Adam(beta1=1.0)


def test_existing_update_rules_unchanged():
    g = np.array([1.0, -2.0])
    assert np.allclose(SGD(0.5).update(g, (), None)[0], [0.5, -1.0])
    hb = HeavyBall(0.1, 0.9)
    s = hb.init(np.zeros(2))
    step, s = hb.update(g, s, None)
    np.testing.assert_allclose(step, 0.1 * g)
    step2, _ = hb.update(g, s, None)
    np.testing.assert_allclose(step2, 0.1 * g + 0.9 * 0.1 * g)
