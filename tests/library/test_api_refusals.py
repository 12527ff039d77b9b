"""The core API refuses what it cannot compute with, naming the argument, before computing
(issue 20, item 5), and the files it writes get the permissions the umask gives (item 6)."""
import contextlib
import os
import stat

import numpy as np
import pytest

from fbsgd.book import report
from fbsgd.engine import storage
from fbsgd.metrics import ewma, fit_line
from fbsgd.operators import Linear, LogisticScore, Softplus, SquaredNorm
from fbsgd.optimizers import SGD, AddNoise, HeavyBall, PassGradient, descend, train
from fbsgd.passes import Composite, passes, perturbed_passes
from fbsgd.perturbations import Plan
from fbsgd.problems import LogisticRegression, linear_network


class CountingLinear(Linear):
    """A Linear operator that counts its forward passes: the proof that nothing was computed."""

    calls = 0

    def forward(self, y, w):
        CountingLinear.calls += 1
        return super().forward(y, w)


@pytest.fixture
def net():
    CountingLinear.calls = 0
    return Composite([CountingLinear(3, 2), SquaredNorm(2)])


@pytest.fixture
def prob():
    return LogisticRegression.generate(d=4, M=12, data_seed=3)


class Spy:
    """A metric and an estimator that record being called (train calls the metric first, at t = 0)."""

    def __init__(self):
        self.calls = 0

    def metric(self, w):
        self.calls += 1
        return 0.0


def refused(match, f):
    with pytest.raises(ValueError, match=match):
        f()


# --- the five core-API cases of item 5 (the two Plan cases are tested with perturbations.py) ---------

def test_data_with_the_wrong_number_of_columns_is_refused_naming_the_data(net, prob):
    x = np.ones((5, 4))
    refused(r"perturbed_passes: x \(the data\) must have 3 columns per sample .*Linear\(3->2\).*got shape \(5, 4\)",
            lambda: perturbed_passes(net, x, np.zeros(6)))
    assert CountingLinear.calls == 0
    spy = Spy()
    refused(r"train: data must have 5 columns per sample .*LogisticScore\(5->1\).*got shape \(12, 3\)",
            lambda: train(PassGradient(prob.net), np.zeros(4), SGD(0.1), 5, prob.data[:, :3],
                          metrics={"m": spy.metric}))
    assert spy.calls == 0
    refused(r"x \(the data\) must be a 2-D array", lambda: passes(net, np.ones((2, 5, 3)), np.zeros(6)))


def test_data_with_no_rows_is_refused_instead_of_a_nan_gradient(net, prob):
    refused(r"perturbed_passes: x \(the data\) has 0 rows; at least one sample is needed",
            lambda: perturbed_passes(net, np.ones((0, 3)), np.zeros(6)))
    assert CountingLinear.calls == 0
    spy = Spy()
    for batch in (None, 4):
        refused(r"train: data has 0 rows", lambda: train(PassGradient(prob.net), np.zeros(4), SGD(0.1), 5,
                                                       prob.data[:0], batch_size=batch, metrics={"m": spy.metric}))
    assert spy.calls == 0


def test_a_list_given_as_the_network_is_refused_with_how_to_wrap_it(net, prob):
    ops = list(prob.net.ops)
    refused(r"perturbed_passes: net must be a Composite .*got list — wrap it: Composite\(\[\.\.\.\]\)",
            lambda: perturbed_passes(ops, prob.data, np.zeros(4)))
    refused(r"PassGradient: net must be a Composite .*got list", lambda: PassGradient(ops))
    refused(r"PassGradient: net must be a Composite .*got list",
            lambda: descend(ops, prob.data, np.zeros(4), SGD(0.1), 3))
    refused(r"train: estimator must have init\(seed\).*got Composite — give PassGradient\(net\)",
            lambda: train(prob.net, np.zeros(4), SGD(0.1), 3, prob.data))
    refused(r"Composite: ops\[1\] must be an operator .*got str", lambda: Composite([Linear(3, 1), "tanh"]))
    refused(r"Composite: ops must be a list of operators .*already a Composite", lambda: Composite(net))
    # the list, wrapped as the message says, is the network: its gradient is the closed form of eq. (53)
    w = np.linspace(-1, 1, 4)
    loss_gradient = prob.gradient(w) - prob.rho * prob.regularizer.gradient(w)
    np.testing.assert_allclose(passes(Composite(ops), prob.data, w).gradient(), loss_gradient, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kwargs,match", [
    (dict(d=2.5), r"LogisticRegression.generate: d must be an integer >= 1, got 2.5"),
    (dict(d="3"), r"d must be an integer >= 1, got '3'"),
    (dict(d=True), r"d must be an integer >= 1, got True"),
    (dict(M=0), r"M must be an integer >= 1, got 0"),
    (dict(M=10.0), r"M must be an integer >= 1, got 10.0"),
    (dict(rho=float("nan")), r"rho must be a finite number >= 0, got nan"),
    (dict(rho=-0.1), r"rho must be a finite number >= 0, got -0.1"),
    (dict(data_seed=1.5), r"data_seed must be an integer >= 0, got 1.5"),
    (dict(regularizer="l1"), r"regularizer must be one of"),
])
def test_generate_refuses_bad_sizes_by_name_before_drawing(kwargs, match, monkeypatch):
    def no_draws(*a, **k):
        raise AssertionError("drew random numbers before refusing")

    monkeypatch.setattr(np.random, "default_rng", no_draws)
    refused(match, lambda: LogisticRegression.generate(**kwargs))


def test_text_and_complex_data_are_refused_rather_than_parsed(net, prob):
    text = prob.data.astype(str)  # numbers as text: np.asarray(..., dtype=float) would parse them silently
    refused(r"perturbed_passes: x \(the data\) must hold real numbers .*got dtype <U\d+ \(text\)",
            lambda: perturbed_passes(prob.net, text, np.zeros(4)))
    refused(r"train: data must hold real numbers", lambda: train(PassGradient(prob.net), np.zeros(4), SGD(0.1), 3, text))
    refused(r"x \(the data\) must hold real numbers .*complex128",
            lambda: perturbed_passes(net, np.ones((2, 3)) + 1j, np.zeros(6)))
    refused(r"w \(the weights\) must hold real numbers", lambda: perturbed_passes(net, np.ones((2, 3)), np.array(["0"] * 6)))
    refused(r"LogisticRegression: features must hold real numbers",
            lambda: LogisticRegression(prob.features.astype(str), prob.labels, prob.x_star, 0.0, "l2"))
    assert CountingLinear.calls == 0


# --- neighbouring cases ---------------------------------------------------------------------------

def test_labels_must_be_plus_or_minus_one_where_the_loss_needs_them(prob):
    y01 = (prob.labels > 0).astype(float)
    refused(r"LogisticRegression: labels must be \+1 or -1 \(eq. 53\); \d+ of 12 are not \(values found: 0\); "
            r"convert 0/1 labels with 2\*y - 1",
            lambda: LogisticRegression(prob.features, y01, prob.x_star, 0.0, "l2"))
    refused(r"labels must be a 1-D array with one label per row of features \(12\), got shape \(5,\)",
            lambda: LogisticRegression(prob.features, prob.labels[:5], prob.x_star, 0.0, "l2"))
    data = prob.data.copy()
    data[3, -1] = 0.5
    spy = Spy()
    refused(r"train: data: the last column of each row is LogisticScore\(5->1\)'s label and must be \+1 or -1; "
            r"1 of 12 are not \(values found: 0.5\)",
            lambda: train(PassGradient(prob.net), np.zeros(4), SGD(0.1), 3, data, metrics={"m": spy.metric}))
    assert spy.calls == 0
    # labels ±1 given by name: the same problem as the one generated (a regularizer may be named too)
    same = LogisticRegression(prob.features, prob.labels, prob.x_star, prob.rho, "nonconvex")
    w = np.array([0.3, -0.2, 0.1, 0.5])
    assert same.loss(w) == prob.loss(w)


def test_non_finite_data_or_weights_are_refused_once_by_train_before_any_step(prob):
    calls = []

    class Estimator:  # a bare estimator that checks nothing itself
        def init(self, seed):
            return None

        def __call__(self, w, x, state):
            calls.append(1)
            return np.zeros_like(w), state

    data = prob.data.copy()
    data[0, 1] = np.nan
    refused(r"train: data has 1 non-finite entries", lambda: train(Estimator(), np.zeros(4), SGD(0.1), 3, data))
    refused(r"train: w0 has 2 non-finite entries",
            lambda: train(Estimator(), np.array([0, np.inf, np.nan, 0]), SGD(0.1), 0, prob.data))
    refused(r"train: w0 must be a 1-D array of length 4 \(the network's weight size\), got shape \(3,\)",
            lambda: train(PassGradient(prob.net), np.zeros(3), SGD(0.1), 3, prob.data))
    assert calls == []


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=-1), r"train: batch_size must be None \(full batch\) or an integer >= 1, got -1"),
    (dict(batch_size=0), r"batch_size must be None \(full batch\) or an integer >= 1, got 0"),
    (dict(batch_size=2.5), r"batch_size must be None .* got 2.5"),
    (dict(steps=2.5), r"train: steps must be an integer >= 0, got 2.5"),
    (dict(steps=-1), r"train: steps must be an integer >= 0, got -1"),
    (dict(record_every=0), r"train: record_every must be an integer >= 1, got 0"),
    (dict(seed=1.5), r"train: seed must be an integer, got 1.5"),
    (dict(stop_above=float("nan")), r"train: stop_above must be a number > 0"),
    (dict(stop_above=0), r"train: stop_above must be a number > 0"),
    (dict(optimizer=0.1), r"train: optimizer must be an update rule"),
    (dict(metrics={"loss": 3.0}), r"train: metrics\['loss'\] must be a function of w"),
    (dict(callback="print"), r"train: callback must be a function or None"),
])
def test_train_refuses_bad_loop_arguments_by_name(kwargs, match, prob):
    spy = Spy()
    args = dict(optimizer=SGD(0.1), steps=5, metrics={"m": spy.metric})
    args.update(kwargs)
    refused(match, lambda: train(PassGradient(prob.net), np.zeros(4), args.pop("optimizer"), args.pop("steps"),
                                 prob.data, **args))
    assert spy.calls == 0


@pytest.mark.parametrize("make,match", [
    (lambda: SGD(0.0), r"SGD: lr \(the step size γ\) must be a finite number > 0, got 0.0"),
    (lambda: SGD(-0.1), r"SGD: lr .* must be a finite number > 0, got -0.1"),
    (lambda: SGD(float("nan")), r"SGD: lr .* got nan"),
    (lambda: SGD(float("inf")), r"SGD: lr .* got inf"),
    (lambda: SGD("0.1"), r"SGD: lr .* got '0.1'"),
    (lambda: HeavyBall(0.1, float("nan")), r"HeavyBall: beta \(the momentum β\) must be a number in \[0, 1\), got nan"),
    (lambda: HeavyBall(0.1, 1.0), r"HeavyBall: beta .* got 1.0"),
    (lambda: HeavyBall(-1.0, 0.5), r"HeavyBall: lr .* got -1.0"),
    (lambda: AddNoise(SGD(0.1), -1.0, 3), r"AddNoise: std must be a finite number >= 0, got -1.0"),
    (lambda: AddNoise(0.1, 1.0, 3), r"AddNoise: inner must be an update rule"),
    (lambda: AddNoise(SGD(0.1), 1.0, 2.5), r"AddNoise: key must be an integer"),
    (lambda: PassGradient(Composite([Linear(3, 1)]), {1: None}), r"PassGradient: plan must be a Plan"),
    (lambda: perturbed_passes(Composite([Linear(3, 1)]), np.ones((1, 3)), np.zeros(3), {1: None}),
     r"perturbed_passes: plan must be a Plan"),
    (lambda: linear_network([3, 2.5]), r"linear_network: widths\[1\] must be an integer >= 1, got 2.5"),
    (lambda: linear_network([]), r"linear_network: widths must hold at least one width"),
    (lambda: linear_network([3], scale=float("nan")), r"linear_network: scale must be a finite number, got nan"),
    (lambda: fit_line([1.0, 2.0, 3.0], [1.0, 2.0]), r"fit_line: x and y must have the same shape .* \(3,\) and \(2,\)"),
    (lambda: fit_line(["1", "2", "3"], [1.0, 2.0, 4.0]), r"fit_line: x must hold real numbers, got text"),
    (lambda: ewma([1.0, 2.0], 1.5), r"ewma: beta must be a number in \[0, 1\], got 1.5"),
    (lambda: ewma([1.0, 2.0], 0.9, 0), r"ewma: every must be an integer >= 1"),
    (lambda: ewma(np.ones((2, 2)), 0.9), r"ewma: values must be a 1-D series"),
])
def test_update_rules_networks_and_fits_refuse_bad_arguments_by_name(make, match):
    refused(match, make)


def test_what_is_allowed_still_computes_the_same_numbers(prob):
    # a 1-D x is one sample; bool and int data are numbers: each equals the float rows by hand
    net = Composite([Linear(3, 1)])
    w = np.array([0.5, -2.0, 1.0])
    x = np.array([[1, 0, 1], [0, 1, 1]])
    assert passes(net, x[0], w).gradient().tolist() == [1.0, 0.0, 1.0]  # ∂(w·x)/∂w = x
    np.testing.assert_array_equal(passes(net, x.astype(bool), w).gradient(), x.mean(axis=0))
    np.testing.assert_array_equal(passes(net, x, w).gradient(), x.mean(axis=0))
    # a generated problem keeps its arrays (no copy, no conversion) and an SGD step is w − γ∇f
    h = prob.features
    again = LogisticRegression(h, prob.labels, prob.x_star, prob.rho, prob.regularizer)
    assert again.features is h
    w0 = np.array([0.1, 0.2, -0.3, 0.4])
    run = train(PassGradient(prob.net), w0, SGD(0.5), 1, prob.data,
                regularizer_grad=lambda v: prob.rho * prob.regularizer.gradient(v))
    np.testing.assert_allclose(run.w, w0 - 0.5 * prob.gradient(w0), rtol=1e-13, atol=1e-15)
    # batch larger than the data (drawn with replacement) and stop_above = inf are allowed
    train(PassGradient(prob.net), w0, SGD(0.5), 2, prob.data, batch_size=50, stop_above=np.inf)


# --- item 6: files written with the permissions the umask gives --------------------------------------

@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_get_the_mode_the_umask_gives(tmp_path, mask, expected):
    with umask(mask):
        assert storage.current_umask() == mask
        path = storage.atomic_write_bytes(tmp_path / "sub" / "table.csv", b"a,b\n1,2\n")
        older = tmp_path / "old.csv"
        older.write_bytes(b"x")
        os.chmod(older, 0o600)
        storage.atomic_write_bytes(older, b"y")  # a replaced file gets the umask's mode too
        report.save_table(__import__("pandas").DataFrame({"a": [1]}), tmp_path, "saved")
    assert mode(path) == expected
    assert mode(older) == expected
    assert mode(tmp_path / "saved.csv") == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv", "saved.csv", "sub"]  # no temporary left


def test_the_umask_is_read_without_proc_and_left_as_it_was(tmp_path, monkeypatch):
    def no_proc(*a, **k):
        raise OSError("no /proc here")

    monkeypatch.setattr(storage, "open", no_proc, raising=False)  # the fallback: the os.umask swap
    with umask(0o002):
        assert storage.current_umask() == 0o002
        path = storage.atomic_write_bytes(tmp_path / "x.bin", b"1")
        assert os.umask(0o002) == 0o002  # restored
    assert mode(path) == 0o664


def test_a_sweep_cache_entry_gets_the_mode_the_umask_gives(tmp_path, monkeypatch):
    from fbsgd.engine.sweeps import RunConfig, run_sweep

    for mask, expected, gamma in ((0o022, 0o644, 0.1), (0o002, 0o664, 0.2)):
        cache = tmp_path / f"cache{mask:o}"
        monkeypatch.setenv("FBSGD_CACHE_DIR", str(cache))
        with umask(mask):
            res = run_sweep([RunConfig(T=100, gamma=gamma)], cache_dir=True, progress=False, n_jobs=1)
        assert res.computed == 1
        entries = list(cache.rglob("*.npz"))
        assert len(entries) == 1
        assert mode(entries[0]) == expected
