import numpy as np
import pytest

from fbsgd import perturbations as P


def draws(p, shape=(20_000, 1), steps=1, seed=0):
    state = p.init(seed)
    out = []
    for _ in range(steps):
        y, state = p(np.zeros(shape), state)
        out.append(y)
    return np.array(out)


def test_zero_and_nonzero_mean_uniform_moments():
    d, sigma = 10, 2.0
    a = sigma / np.sqrt(d)
    z = draws(P.zero_mean_uniform(sigma, d))
    assert z.min() >= -a and z.max() <= a
    assert abs(z.mean()) < 4 * a / np.sqrt(3 * z.size)
    b = draws(P.nonzero_mean_uniform(sigma, d))
    assert b.min() >= 0 and b.max() <= a
    assert abs(b.mean() - a / 2) < 4 * a / np.sqrt(12 * b.size)
    assert P.zero_mean_uniform(sigma, d).second_moment == pytest.approx(a * a / 3)


def test_shared_draws_one_value_per_step_for_all_samples():
    y = draws(P.zero_mean_uniform(1.0, 1, per_sample=False), shape=(50, 1), steps=3)
    for t in range(3):
        assert np.all(y[t] == y[t][0])
    assert len({y[t][0, 0] for t in range(3)}) == 3


def test_every_acts_on_exactly_the_intended_steps():
    p = P.every(4, P.Constant(1.0), offset=1)
    y = draws(p, shape=(1, 1), steps=13)[:, 0, 0]
    assert list(np.nonzero(y)[0]) == [1, 5, 9]


def test_at_steps_budget_exact():
    steps = [0, 3, 10]
    y = draws(P.at_steps(steps, P.GaussianNoise(1.0)), shape=(1, 1), steps=12)[:, 0, 0]
    assert list(np.nonzero(y)[0]) == steps


def test_topk_keeps_largest_entries_and_breaks_ties_to_lower_index():
    x = np.array([[0.1, -3.0, 2.0, 0.5], [1.0, 1.0, -1.0, 0.0]])
    y = P.TopK(2).apply(x, 0, 0)
    np.testing.assert_array_equal(y, [[0.0, -3.0, 2.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    y1 = P.TopK(1).apply(np.array([[-2.0, 4.0]]), 0, 0)
    np.testing.assert_array_equal(y1, [[0.0, 4.0]])


def test_chain_parts_have_independent_streams():
    u = P.UniformNoise(-1.0, 1.0)
    y = draws(P.chain(u, u), shape=(20_000, 1))[0, :, 0]
    single = draws(u, shape=(20_000, 1))[0, :, 0]
    # a sum of two independent U(-1,1) has variance 2/3, twice the single one
    assert y.var() == pytest.approx(2 / 3, rel=0.05)
    assert single.var() == pytest.approx(1 / 3, rel=0.05)


def test_plan_streams_differ_by_place_and_seed():
    p = P.zero_mean_uniform(1.0, 1)
    plan = P.Plan(forward={1: p}, backward={2: p})
    s = plan.init(0)
    assert s[("forward", 1)].key != s[("backward", 2)].key
    assert plan.init(0) == s and plan.init(1) != s


@pytest.mark.parametrize("bad,match", [
    (lambda: P.UniformNoise(1.0, 0.0), "low <= high"),
    (lambda: P.every(0, P.Constant(1.0)), "interval >= 1"),
    (lambda: P.TopK(0), "k >= 1"),
    (lambda: P.zero_mean_uniform(-1.0, 3), "sigma must be >= 0"),
    (lambda: P.GaussianNoise(-1.0), "std >= 0"),
])
def test_bad_arguments_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


@pytest.mark.parametrize("Q,T,start", [(1, 100, 0), (7, 100, 0), (10, 10, 0), (5, 1000, 300), (0, 50, 0)])
def test_budget_schedule_has_exactly_Q_evenly_spaced_occurrences(Q, T, start):
    p = P.budget(Q, T, P.Constant(1.0), start=start)
    y = draws(p, shape=(1, 1), steps=T)[:, 0, 0]
    steps = np.nonzero(y)[0]
    assert len(steps) == Q
    if Q:
        assert steps[0] == start and steps[-1] < T
        assert len(set(np.diff(steps))) <= 1 and (Q == 1 or np.diff(steps)[0] == (T - start) // Q)


def test_budget_rejects_impossible_requests():
    with pytest.raises(ValueError, match="exceeds"):
        P.budget(11, 10, P.Constant(1.0))
    with pytest.raises(ValueError, match="integer Q"):
        P.budget(-1, 10, P.Constant(1.0))
