"""The chapters that do not use the compiled engine spread their runs over workers
(error propagation and forward gradients over joblib processes, derivatives of SGD over
threads).  Their tables must be the same bits with one worker as with several, and each
row must be the run its labels name."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.studies.forward_gradients import study as FM
from fbsgd.studies.forward_gradients import problems as FP
from fbsgd.studies.error_propagation import study as S
from fbsgd.studies.sgd_derivatives import sgd_prime as SD
from fbsgd.optimizers import SGD, PassGradient, train
from fbsgd.studies.error_propagation.injection import error_vs_bounds


def test_propagation_rows_do_not_depend_on_the_workers():
    tables = [S.Study(4, 1.2, 1.5, 0, n_jobs=n).depth([2, 3, 4], [1, 2], 0.1, 64, 128) for n in (1, 2)]
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)


def test_propagation_row_is_the_measurement_its_labels_name():
    study = S.Study(4, 1.2, 1.5, 0, n_jobs=2)
    t = study.location(4, 2, 0.1, 64)
    # the seeds are handed out in listing order: the third measurement (linear chain, forward, k = 3) has seed 2
    net, w, _ = study.linear_chain(4)
    row = error_vs_bounds(net, w, study.x, "forward", 3, S.pert.zero_mean_uniform(0.1, 4), 64, seed=2,
                          max_batch=study.group_rows)
    got = t.iloc[2]
    assert (got["chain"], got["where"], got["k"]) == ("linear", "forward", 3)
    assert got["mse"] == row["mse"] and got["bias_sq"] == row["bias_sq"]


@pytest.fixture(scope="module")
def perceptron():
    net = FP.mlp_classifier(3, 4)
    data = FP.teacher_classification(M=60, d=3, data_seed=1)
    return net, data, net.init_weight(np.random.default_rng(0))


def test_forward_gradient_grid_does_not_depend_on_the_workers(perceptron):
    net, data, w0 = perceptron
    out = [FM.estimator_grid(net, data, w0, "sgd", [0.05, 0.2], 40, [0, 1], batch_size=8, n_jobs=n) for n in (1, 2)]
    for a, b in zip(*out):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_forward_gradient_grid_row_is_the_run_its_labels_name(perceptron):
    net, data, w0 = perceptron
    curves, runs = FM.estimator_grid(net, data, w0, "sgd", [0.05, 0.2], 40, [0, 1], batch_size=8, n_jobs=2)
    metric = lambda w: float(net.value(data, w).mean())  # noqa: E731 (the grid's default metric)
    run = train(PassGradient(net), w0, SGD(0.2), 40, data, batch_size=8, seed=1, metrics={"loss": metric})
    row = runs[(runs.lr == 0.2) & (runs.estimator == "backprop") & (runs.seed == 1)]
    assert len(row) == 1 and row.final.iloc[0] == run["loss"][-1]
    assert list(runs.estimator[:2]) == ["backprop", "backprop"] and list(runs.lr[:4]) == [0.05] * 4


def test_training_grid_splits_the_shared_pool_by_model(perceptron):
    net, data, w0 = perceptron
    models = {"a": dict(net=net, data=data, w0=w0), "b": dict(net=net, data=data, w0=w0 * 0.5)}
    curves, runs = FM.training_grid(models, "sgd", {"a": [0.1], "b": [0.1, 0.3]}, {"a": 20, "b": 30}, [0], 8, n_jobs=2)
    assert list(runs.model) == ["a"] * 2 + ["b"] * 4
    _, alone = FM.estimator_grid(net, data, w0 * 0.5, "sgd", [0.1, 0.3], 30, [0], 8, n_jobs=1)
    np.testing.assert_array_equal(runs[runs.model == "b"].final.to_numpy(), alone.final.to_numpy())


def test_estimator_grid_names_a_bad_optimizer(perceptron):
    net, data, w0 = perceptron
    with pytest.raises(ValueError, match="optimizer"):
        FM.estimator_grid(net, data, w0, "rmsprop", [0.1], 5, [0], 8)


def test_sgd_prime_seeds_on_threads_match_one_seed_at_a_time():
    pr = SD.ParametricLeastSquares.generate(d=3, m=9, setting="general", curvature=0.5, data_seed=2)
    etas = SD.constant_steps(0.1 / pr.constants["L"], 200)
    ck = np.array([0, 10, 200])
    together = SD.run_sgd_prime(pr, etas, [4, 9, 1, 7], ck)
    for i, s in enumerate([4, 9, 1, 7]):
        alone = SD.run_sgd_prime(pr, etas, [s], ck)
        for name in SD.RECORDED + ("e_max",):
            np.testing.assert_array_equal(together[name][i], alone[name][0])
