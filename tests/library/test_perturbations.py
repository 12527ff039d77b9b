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


# --- the protocol: law, schedule, memory ----------------------------------------------------------


def test_schedules_compose_and_count():
    p = P.every(4, P.Constant(1.0), offset=1)
    assert (p.schedule.first, p.schedule.interval, p.schedule.last) == (1, 4, None)
    assert p.schedule.count(13) == 3 and list(p.schedule.steps_before(13)) == [1, 5, 9]
    b = P.budget(5, 100, P.zero_mean_uniform(1.0, 1))
    assert b.schedule.regular and (b.schedule.first, b.schedule.interval, b.schedule.last) == (0, 20, 80)
    assert b.schedule.count(10**6) == 5
    irregular = P.at_steps([1, 2, 10], P.Constant(1.0))
    assert not irregular.schedule.regular and irregular.schedule.count(11) == 3
    nested = P.every(2, P.every(3, P.Constant(1.0)))  # both gates: multiples of 6
    assert list(nested.schedule.steps_before(20)) == [0, 6, 12, 18]
    assert [t for t in range(20) if nested.active(t)] == [0, 6, 12, 18]
    assert P.budget(0, 10, P.Constant(1.0)).schedule.empty


def test_laws_describe_the_draws():
    u = P.zero_mean_uniform(2.0, 4)
    assert u.law.family == "uniform" and u.law.zero_mean and u.law.additive and u.law.support == (-1.0, 1.0)
    x = draws(u, shape=(50_000, 1))[0, :, 0]
    assert abs(x.mean()) < 5 * np.sqrt(u.law.variance / x.size)
    assert np.mean(x**4) == pytest.approx(u.law.fourth_moment, rel=0.03)
    g = P.GaussianNoise(0.5, mean=0.2)
    assert g.law.second_moment == pytest.approx(0.2**2 + 0.5**2) and not g.law.zero_mean
    assert P.every(3, u).law == u.law  # a gate does not change the law at the steps where it acts
    s = P.chain(P.UniformNoise(0.0, 1.0), P.Constant(0.5)).law
    assert s.additive and s.mean == pytest.approx(1.0) and s.second_moment == pytest.approx(1 / 12 + 1.0)
    r = P.Round("bfloat16").law
    assert not r.additive and not r.zero_mean and r.relative_bound == 2.0**-8
    assert P.Round("bfloat16", "stochastic").law.zero_mean and P.RandK(2).law.zero_mean
    assert not P.TopK(2).law.zero_mean and P.TopK(2).law.relative_bound == 1.0


def test_rounding_to_nearest_respects_its_bound():
    x = np.random.default_rng(0).standard_normal((1000, 3)) * 10.0 ** np.random.default_rng(1).integers(-3, 3, (1000, 3))
    for fmt in ("bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"):
        p = P.Round(fmt)
        y, _ = p(x, p.init(0))
        law = p.law
        ok = np.isfinite(y)
        assert np.all(np.abs(y - x)[ok] <= law.bound + law.relative_bound * np.abs(x)[ok] * (1 + 1e-12))


def test_randk_is_unbiased_and_keeps_k_entries():
    x = np.arange(1.0, 9.0).reshape(1, 8).repeat(4, axis=0)
    p = P.RandK(2)
    state, acc = p.init(3), np.zeros_like(x)
    n = 20_000
    for _ in range(n):
        y, state = p(x, state)
        assert np.all((y != 0).sum(axis=1) == 2)
        acc += y
    # per entry: kept with probability 1/4 and scaled by 4, so Var = x²(4 − 1); 5 standard errors
    assert np.all(np.abs(acc / n - x) < 5 * x * np.sqrt(3.0 / n))
    across = P.RandK(1, scope="batch")
    y, _ = across(np.ones((5, 1)), across.init(0))
    assert (y != 0).sum() == 1 and y.sum() == 5.0


def test_error_feedback_sends_everything_eventually():
    """Σ_t sent_t + e_T = Σ_t x_t exactly (in float64) for EF around a compressor."""
    rng_ = np.random.default_rng(0)
    for compressor in (P.TopK(1), P.RandK(2), P.TopK(2, scope="batch"), P.Round("float8_e4m3fn")):
        p = P.ErrorFeedback(compressor)
        state = p.init(0)
        sent_sum, x_sum = np.zeros((3, 4)), np.zeros((3, 4))
        for _ in range(50):
            x = rng_.integers(-8, 8, (3, 4)).astype(float)  # integers: every sum below is exact
            y, state = p(x, state)
            sent_sum += y
            x_sum += x
        np.testing.assert_array_equal(sent_sum + state.memory, x_sum)


def test_error_feedback_keeps_its_memory_between_gated_steps():
    p = P.every(2, P.ErrorFeedback(P.TopK(1)))
    state = p.init(0)
    x = np.array([[3.0, 1.0]])
    y0, state = p(x, state)   # acts: sends 3, keeps 1
    y1, state = p(x, state)   # gate closed: passes x through, memory unchanged
    y2, state = p(x, state)   # acts on x + e = (3, 2): sends 3, keeps (0, 2)
    np.testing.assert_array_equal(y0, [[3.0, 0.0]])
    np.testing.assert_array_equal(y1, x)
    np.testing.assert_array_equal(state.memory, [[0.0, 2.0]])


def test_measure_reports_what_a_perturbation_does():
    x = np.linspace(0.1, 4.0, 400).reshape(400, 1)
    m = P.measure(P.Round("float8_e4m3fn"), x, steps=2)
    assert 0 < m["relative_size"] <= 2.0**-4 and m["active_steps"] == 2
    m = P.measure(P.every(3, P.Constant(1.0)), x, steps=6)
    assert m["active_steps"] == 2 and m["mean"] == pytest.approx(1 / 3)
    assert P.measure(P.TopK(1, scope="batch"), x)["relative_size"] < 1.0
