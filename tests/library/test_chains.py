"""Any chain on any data through the library's reference loop: fbsgd.optimizers.train and PassGradient with a
Dataset (features and labels), against finite differences, the documented minibatch rule and the README."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fbsgd import perturbations as P
from fbsgd import rng
from fbsgd.operators import Affine, LogisticLoss, SoftmaxCrossEntropy, Tanh
from fbsgd.optimizers import SGD, Adam, HeavyBall, PassGradient, minibatch_indices, train
from fbsgd.passes import Composite, passes
from fbsgd.problems import Dataset, LogisticRegression, mlp
from tests.conftest import central_difference

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def three_classes():
    return Dataset.classification(300, 5, classes=3, seed=0, label_noise=0.3)


def _mean_loss(net, ds):
    return lambda w: float(net.value(ds.features, w, ds.labels).mean())


@pytest.mark.parametrize("optimizer", [SGD(0.2), HeavyBall(0.05, 0.9), Adam(0.02)], ids=lambda o: type(o).__name__)
def test_a_softmax_mlp_learns_a_generated_three_class_set(three_classes, optimizer):
    net = mlp(5, [16], activation="tanh", loss="softmax", classes=3)
    w0 = net.init_weight(np.random.default_rng(0))
    run = train(PassGradient(net), w0, optimizer, 300, three_classes, batch_size=32, seed=1,
                metrics={"loss": _mean_loss(net, three_classes)}, record_every=100)
    loss = run["loss"]
    assert not run.diverged and np.all(np.isfinite(loss))
    # from about ln 3 ≈ 1.1 (a random network) to well below it; each recorded value below the first
    assert loss[-1] < 0.5 * loss[0] and loss[-1] < 0.6 and np.all(loss[1:] < loss[0])
    logits = passes(net, three_classes.features, run.w, three_classes.labels).ys[-2]  # the scores the loss reads
    assert np.mean(np.argmax(logits, axis=1) == three_classes.labels) > 0.8


@pytest.mark.parametrize("loss,data", [
    ("softmax", Dataset.classification(40, 4, classes=3, seed=2)),
    ("logistic", Dataset.classification(40, 4, classes=2, seed=2)),
])
def test_the_gradient_of_one_pass_is_the_derivative_of_the_mean_loss(loss, data):
    net = mlp(4, [6, 5], activation="tanh", loss=loss, classes=data.classes)
    w = net.init_weight(np.random.default_rng(3)) + 0.1 * np.random.default_rng(4).standard_normal(net.weight_size)
    est = PassGradient(net)
    g, _ = est(w, data, est.init(0))
    g2, _ = est(w, data.features, est.init(0), labels=data.labels)
    fd = central_difference(_mean_loss(net, data), w)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    assert g.tobytes() == g2.tobytes()


def test_minibatches_take_the_same_rows_of_features_and_labels_by_the_documented_stream(three_classes):
    net = mlp(5, [4], loss="softmax", classes=3)
    seen = []

    class Recording(PassGradient):
        def __call__(self, w, x, state, labels=None):
            seen.append((x.copy(), labels.copy()))
            return super().__call__(w, x, state, labels=labels)

    seed, batch, steps = 7, 16, 5
    train(Recording(net), np.zeros(net.weight_size), SGD(0.1), steps, three_classes, batch_size=batch, seed=seed)
    key = rng.derive_key("fbsgd.train.batch", seed)
    assert len(seen) == steps
    for t, (x, y) in enumerate(seen):
        idx = minibatch_indices(key, t, three_classes.rows, batch)
        np.testing.assert_array_equal(x, three_classes.features[idx])
        np.testing.assert_array_equal(y, three_classes.labels[idx])
    seen.clear()
    train(Recording(net), np.zeros(net.weight_size), SGD(0.1), 2, three_classes, seed=seed)  # full batch: every row
    np.testing.assert_array_equal(seen[0][0], three_classes.features)
    np.testing.assert_array_equal(seen[0][1], three_classes.labels)


def test_a_perturbed_run_is_reproducible_and_the_section7_chain_is_a_logistic_loss_chain():
    """The same seed gives the same bits; a perturbed logistic chain on (features, labels) runs the logistic
    regression of Section 7: with no perturbation, its iterates are those of the closed-form gradient."""
    lr = LogisticRegression.generate(d=5, M=60, rho=0.0)
    ds = Dataset(lr.features, lr.labels)
    net = Composite([Affine(5, 1, bias=False), LogisticLoss()])
    plan = P.Plan(forward={1: P.Round("bfloat16", mode="stochastic")}, backward={2: P.GaussianNoise(0.1)})
    runs = [train(PassGradient(net, plan), np.zeros(5), SGD(0.5), 50, ds, batch_size=8, seed=3) for _ in range(2)]
    assert runs[0].w.tobytes() == runs[1].w.tobytes()
    assert not np.array_equal(runs[0].w, train(PassGradient(net, plan), np.zeros(5), SGD(0.5), 50, ds, batch_size=8,
                                               seed=4).w)
    clean = train(PassGradient(net), np.zeros(5), SGD(0.5), 50, ds).w
    w = np.zeros(5)
    for _ in range(50):
        w = w - 0.5 * lr.gradient(w)
    np.testing.assert_allclose(clean, w, rtol=1e-12, atol=1e-14)


def test_train_refuses_data_and_chains_that_do_not_fit_before_anything_runs(three_classes):
    calls = []
    metric = {"m": lambda w: calls.append(1) or 0.0}
    soft = mlp(5, [4], loss="softmax", classes=3)
    logistic = mlp(5, [4])
    binary = Dataset.classification(30, 5, seed=1)

    def refused(match, est, w0, data):
        with pytest.raises(ValueError, match=match):
            train(est, w0, SGD(0.1), 3, data, metrics=metric)

    refused(r"train: the network ends in SoftmaxCrossEntropy\(3\), which reads one label per sample: give data as a "
            r"fbsgd\.problems\.Dataset", PassGradient(soft), np.zeros(soft.weight_size), three_classes.features)
    refused(r"train: data: labels must be integers 0\.\.1 .*got dtype float64; ±1 labels go with LogisticLoss",
            PassGradient(mlp(5, [4], loss="softmax", classes=2)), np.zeros(soft.weight_size - 5), binary)
    refused(r"train: data has 3 classes but the network's loss SoftmaxCrossEntropy\(4\) has 4",
            PassGradient(mlp(5, [4], loss="softmax", classes=4)), np.zeros(soft.weight_size + 5), three_classes)
    refused(r"train: data: labels must be \+1 or -1 \(LogisticLoss\).*SoftmaxCrossEntropy",
            PassGradient(logistic), np.zeros(logistic.weight_size), three_classes)
    lr = LogisticRegression.generate(d=5, M=30)
    refused(r"train: data is a Dataset \(features and labels\), but the network's last operator Softplus\(1->1\) reads no "
            r"labels \(its labels are the last column", PassGradient(lr.net), np.zeros(5), Dataset(lr.features, lr.labels))

    class NoLabels:
        net = soft

        def init(self, seed):
            return {}

        def __call__(self, w, x, state):
            return np.zeros_like(w), state

    refused(r"train: data is a Dataset with labels, but estimator NoLabels takes no labels= argument",
            NoLabels(), np.zeros(soft.weight_size), three_classes)
    refused(r"train: w0 must be a 1-D array of length 39", PassGradient(soft), np.zeros(3), three_classes)
    assert calls == []
    with pytest.raises(ValueError, match="PassGradient: labels were given twice"):
        PassGradient(soft)(np.zeros(soft.weight_size), three_classes, {}, labels=three_classes.labels)


def test_a_loss_chain_built_by_hand_equals_mlp():
    a = mlp(3, [4], activation="tanh", loss="softmax", classes=2)
    b = Composite([Affine(3, 4), Tanh(4), Affine(4, 2), SoftmaxCrossEntropy(2)])
    assert P.canonical(a) == P.canonical(b)


def test_the_readme_example_of_a_users_model_and_data_runs(tmp_path):
    text = README.read_text()
    start = text.index("## Your own model and data")
    section = text[start:text.find("\n## ", start + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    script = tmp_path / "own_model.py"
    script.write_text(blocks[0].replace("600, train_set", "60, train_set"))
    env = {**os.environ, "FBSGD_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].endswith("Affine(16->3) -> SoftmaxCrossEntropy(3)")
    assert [ln.split()[0] for ln in lines[1:]] == ["clean", "float8"]
