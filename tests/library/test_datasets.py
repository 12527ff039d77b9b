"""A researcher's own data (fbsgd.problems.Dataset) and model (fbsgd.problems.mlp): generated sets against
the rules they document, validation by argument name, identity for caches, splits, standardization."""
import dataclasses
import hashlib
import pickle
import sys

import numpy as np
import pytest

from fbsgd import operators as O
from fbsgd.perturbations import canonical
from fbsgd.problems import Dataset, mlp
from fbsgd.studies.real_mechanisms.deep_chain import classification_data


@pytest.mark.parametrize("n,dim,seed,noise", [(512, 32, 0, 0.5), (37, 3, 5, 0.0), (100, 1, 2, 2.0)])
def test_two_class_generator_gives_the_bits_of_the_deep_chain_chapters_data(n, dim, seed, noise):
    ds = Dataset.classification(n, dim, seed=seed, label_noise=noise)
    x, y = classification_data(n, dim, seed=seed, label_noise=noise)
    assert ds.features.tobytes() == x.tobytes() and ds.labels.tobytes() == y.tobytes()
    assert ds.kind == "binary" and ds.classes == 2 and ds.labels.dtype == np.float64


def test_k_class_generator_follows_its_documented_rule():
    n, dim, K, seed, noise = 400, 6, 4, 3, 0.3
    ds = Dataset.classification(n, dim, classes=K, seed=seed, label_noise=noise)
    g = np.random.default_rng(seed)  # x ~ N(0, I), Θ ~ N(0, 1) (dim × K), Ξ ~ N(0, 1) (n × K), in that order
    x = g.standard_normal((n, dim))
    theta = g.standard_normal((dim, K))
    xi = g.standard_normal((n, K))
    expected = np.array([max(range(K), key=lambda k: (x[i] @ theta[:, k]) / np.sqrt(dim) + noise * xi[i, k])
                         for i in range(n)])
    np.testing.assert_array_equal(ds.features, x)
    np.testing.assert_array_equal(ds.labels, expected)
    assert ds.kind == "classes" and ds.classes == K and ds.labels.dtype == np.int64
    assert set(np.unique(ds.labels)) == set(range(K))


def test_a_dataset_is_frozen_and_copies_what_it_is_given():
    x = np.arange(6.0).reshape(3, 2)
    y = np.array([0, 1, 2])
    ds = Dataset(x, y, name="toy")
    x[0, 0] = 99.0
    y[0] = 2
    assert ds.features[0, 0] == 0.0 and ds.labels[0] == 0
    with pytest.raises(ValueError, match="read-only"):
        ds.features[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.labels = y
    assert (ds.rows, ds.dim, len(ds), ds.kind, ds.classes) == (3, 2, 3, "classes", 3)
    assert Dataset(x, np.array([1, -1, 1])).kind == "binary"  # integer ±1 labels are a binary set, stored as floats
    assert Dataset(x, np.array([1, -1, 1])).labels.dtype == np.float64
    assert Dataset(x, np.array([0, 1, 1]), classes=5).classes == 5  # a part of a larger set keeps its K


def test_fingerprint_is_the_sha256_of_shape_dtype_and_bytes_and_the_name_is_not_identity():
    ds = Dataset.classification(50, 4, classes=3, seed=1)
    h = hashlib.sha256()
    for a in (ds.features, ds.labels):
        h.update(f"{a.shape}|{a.dtype.str}|".encode() + a.tobytes())
    assert ds.fingerprint == h.hexdigest() and len(ds.fingerprint) == 64
    x = ds.features.copy()
    x[7, 2] = np.nextafter(x[7, 2], np.inf)  # one bit of one feature
    y = ds.labels.copy()
    y[0] = (y[0] + 1) % 3
    same = Dataset(ds.features, ds.labels, name="another name", classes=3)
    assert same == ds and canonical(same) == canonical(ds) and hash(same) == hash(ds)
    others = [Dataset(x, ds.labels), Dataset(ds.features, y), Dataset(ds.features, ds.labels, classes=4),
              Dataset(ds.features[:, :3], ds.labels)]
    texts = {canonical(o) for o in others}
    assert len(texts) == 4 and canonical(ds) not in texts and all(o != ds for o in others)
    assert canonical(ds) == f"Dataset(rows=50, dim=4, kind='classes', classes=3, sha256='{ds.fingerprint}')"
    back = pickle.loads(pickle.dumps(ds))  # what a worker process receives
    assert back == ds and canonical(back) == canonical(ds) and not back.features.flags.writeable


@pytest.mark.parametrize("features,labels,kwargs,match", [
    (np.ones(4), np.ones(4), {}, r"Dataset: features must be a 2-D array .*got shape \(4,\)"),
    (np.ones((0, 3)), np.ones(0), {}, r"Dataset: features must be a 2-D array .*at least one row"),
    (np.array([[1.0, np.nan]]), np.ones(1), {}, r"Dataset: features has 1 non-finite entries"),
    (np.array([["a", "b"]]), np.ones(1), {}, r"Dataset: features must hold real numbers .*\(text\)"),
    (np.ones((3, 2)), np.ones(2), {}, r"Dataset: labels must be a 1-D array with one label per row of features \(3\)"),
    (np.ones((3, 2)), np.ones((3, 1)), {}, r"Dataset: labels must be a 1-D array .*got shape \(3, 1\)"),
    (np.ones((3, 2)), np.array([0.0, 1.0, 1.0]), {}, r"Dataset: labels must be either \+1/-1 .*2\*y - 1 .*astype\(int\)"),
    (np.ones((3, 2)), np.array([0.0, 2.0, 1.0]), {}, r"Dataset: labels must be .*integers: y\.astype\(int\)"),
    (np.ones((3, 2)), np.array([1.0, -1.0, 0.5]), {}, r"Dataset: labels must be .*1 of 3 are not \(values found: 0\.5\)"),
    (np.ones((3, 2)), np.array([True, False, True]), {}, r"Dataset: labels must be .*got dtype bool"),
    (np.ones((3, 2)), np.array([1, -1, 2]), {}, r"Dataset: labels must be .*values found: 2"),
    (np.ones((3, 2)), np.array([0, 0, 0]), {}, r"Dataset: integer labels must name at least 2 classes .*classes=K"),
    (np.ones((3, 2)), np.array([0, 4, 1]), {"classes": 3}, r"Dataset: labels must be .*K = classes = 3; found 4"),
    (np.ones((3, 2)), np.array([1.0, -1.0, 1.0]), {"classes": 3}, r"Dataset: classes must be None or 2 for ±1 labels"),
    (np.ones((3, 2)), np.array([0, 1, 1]), {"classes": 1}, r"Dataset: classes must be an integer >= 2"),
    (np.ones((3, 2)), np.array([0, 1, 1]), {"name": 3}, r"Dataset: name must be a string"),
])
def test_bad_data_is_refused_naming_the_argument(features, labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Dataset(features, labels, **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"n": 0, "dim": 2}, r"Dataset\.classification: n must be an integer >= 1, got 0"),
    ({"n": 5, "dim": 2.0}, r"Dataset\.classification: dim must be an integer >= 1"),
    ({"n": 5, "dim": 2, "classes": 1}, r"Dataset\.classification: classes must be an integer >= 2"),
    ({"n": 5, "dim": 2, "seed": -1}, r"Dataset\.classification: seed must be an integer >= 0"),
    ({"n": 5, "dim": 2, "label_noise": float("nan")}, r"Dataset\.classification: label_noise must be a finite number >= 0"),
])
def test_bad_generator_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Dataset.classification(**kwargs)


def test_split_partitions_the_rows_deterministically_and_keeps_k():
    ds = Dataset.classification(101, 3, classes=3, seed=4)
    train, test = ds.split(0.2, seed=7)
    assert (train.rows, test.rows) == (81, 20) and train.classes == test.classes == 3
    rows = {tuple(r) for r in ds.features}
    parts = [tuple(r) for r in np.concatenate([train.features, test.features])]
    assert len(parts) == 101 and set(parts) == rows  # every row once (the generated rows are distinct)
    where = {tuple(r): i for i, r in enumerate(ds.features)}
    idx = [where[tuple(r)] for r in test.features]
    assert idx == sorted(idx)  # original order kept
    np.testing.assert_array_equal(test.labels, ds.labels[idx])
    assert ds.split(0.2, seed=7)[1] == test and ds.split(0.2, seed=8)[1] != test
    for bad, match in ((0.0, r"test_fraction must be a number in \(0, 1\)"),
                       (1.0, r"test_fraction must be a number in \(0, 1\), got 1.0"),
                       (0.001, r"test_fraction = 0.001 of 101 rows gives 0 test rows"),
                       ("0.2", r"test_fraction must be a finite number")):
        with pytest.raises(ValueError, match="Dataset.split: " + match):
            ds.split(bad)


def test_standardized_columns_have_mean_zero_and_unit_deviation():
    r = np.random.default_rng(0)
    x = r.normal([3.0, -2.0, 5.0], [0.5, 4.0, 1.0], size=(200, 3))
    x[:, 2] = 5.0  # a constant column is only centred
    ds = Dataset(x, r.choice([-1.0, 1.0], 200))
    train, test = ds.split(0.25, seed=0)
    z = train.standardized()
    np.testing.assert_allclose(z.features.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.features.std(axis=0), [1.0, 1.0, 0.0], atol=1e-12)
    zt = test.standardized(using=train)
    m, s = train.features.mean(axis=0), train.features.std(axis=0)
    np.testing.assert_allclose(zt.features[:, :2], (test.features[:, :2] - m[:2]) / s[:2], rtol=1e-14)
    np.testing.assert_array_equal(zt.labels, test.labels)
    with pytest.raises(ValueError, match="Dataset.standardized: using must be a Dataset"):
        test.standardized(using=x)


def test_mlp_builds_the_documented_chain():
    net = mlp(5, [8, 6], activation="relu", loss="softmax", classes=4)
    kinds = [type(op) for op in net.ops]
    assert kinds == [O.Affine, O.ReLU, O.Affine, O.ReLU, O.Affine, O.SoftmaxCrossEntropy]
    assert [(op.in_dim, op.out_dim) for op in net.ops] == [(5, 8), (8, 8), (8, 6), (6, 6), (6, 4), (4, 1)]
    assert net.weight_size == (5 * 8 + 8) + (8 * 6 + 6) + (6 * 4 + 4) and net.uses_labels
    lin = mlp(3, [], bias=False)
    assert [type(op) for op in lin.ops] == [O.Affine, O.LogisticLoss] and lin.weight_size == 3
    assert [type(op) for op in mlp(2, [4], activation="identity").ops][1] is O.Identity
    assert [type(op) for op in mlp(2, [4]).ops][1] is O.Tanh
    assert [type(op) for op in mlp(2, [4], activation="sigmoid").ops][1] is O.Sigmoid
    w = net.init_weight(np.random.default_rng(0))
    b1 = w[40:48]
    assert np.all(b1 == 0.0) and w.shape == (net.weight_size,)


@pytest.mark.parametrize("args,kwargs,match", [
    ((0, [4]), {}, r"mlp: in_dim must be an integer >= 1"),
    ((3, 4), {}, r"mlp: widths must be a list of hidden widths"),
    ((3, [4, 0]), {}, r"mlp: widths\[1\] must be an integer >= 1"),
    ((3, [4]), {"activation": "gelu"}, r"mlp: activation must be one of 'tanh', 'relu', 'sigmoid', 'identity', got 'gelu'"),
    ((3, [4]), {"loss": "hinge"}, r"mlp: loss must be 'logistic' .* or 'softmax'"),
    ((3, [4]), {"loss": "softmax"}, r"mlp: loss='softmax' needs classes=K"),
    ((3, [4]), {"loss": "softmax", "classes": 1}, r"mlp: classes must be an integer >= 2"),
    ((3, [4]), {"classes": 3}, r"mlp: loss='logistic' is a binary loss .*classes must be None or 2"),
    ((3, [4]), {"bias": 1}, r"mlp: bias must be True or False"),
])
def test_mlp_refuses_bad_arguments_by_name(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mlp(*args, **kwargs)


def test_digits_is_scikit_learns_1797_images_of_8_by_8_pixels():
    pytest.importorskip("sklearn")
    ds = Dataset.digits()
    assert (ds.rows, ds.dim, ds.kind, ds.classes) == (1797, 64, "classes", 10)
    assert np.all(ds.features == np.round(ds.features)) and ds.features.min() == 0 and ds.features.max() == 16
    assert ds.labels[0] == 0 and set(np.unique(ds.labels)) == set(range(10))  # the set opens with a zero
    z = ds.standardized()
    assert np.all(np.abs(z.features.mean(axis=0)) < 1e-12)


def test_digits_without_scikit_learn_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # an import of it now fails as if not installed
    with pytest.raises(ImportError, match=r"Dataset\.digits needs scikit-learn, .*\(pip install scikit-learn\)"):
        Dataset.digits()
