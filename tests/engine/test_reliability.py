"""No stale or wrong result: the cache and the compiled kernels serve only what the
current code computes for the requested configuration."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fbsgd
from fbsgd.engine import provenance
from fbsgd.engine import sweeps as S
from fbsgd.engine.sweeps import RunConfig, run_sweep

PACKAGE = Path(fbsgd.__file__).resolve().parent

PROBE = """
import json, sys
from fbsgd.engine.sweeps import RunConfig, run_sweep, engine_hash
cfgs = [RunConfig(T=200, gamma=0.05 + 0.01 * i, seed=i) for i in range(12)]
res = run_sweep(cfgs, n_jobs=1, cache_dir=sys.argv[1], progress=False)
print(json.dumps(dict(diverged=int(res.table.diverged.sum()), computed=res.computed, hash=engine_hash(),
                      norms=res.table.stable_grad_norm.tolist())))
"""


def _probe(tmp_path, kernel_dir, cache_dir, package_root=None):
    env = {**os.environ, "FBSGD_KERNEL_DIR": str(kernel_dir)}
    if package_root is not None:
        env["PYTHONPATH"] = str(package_root)
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    out = subprocess.run([sys.executable, str(script), str(cache_dir)], env=env, capture_output=True, text=True,
                         cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _edited_copy(tmp_path, module: str, old: str, new: str) -> Path:
    root = tmp_path / "edited"
    shutil.copytree(PACKAGE, root / "fbsgd", ignore=shutil.ignore_patterns("__pycache__"))
    path = root / "fbsgd" / module
    text = path.read_text()
    assert old in text, f"{old!r} not found in {module}"
    path.write_text(text.replace(old, new, 1))
    return root


def _warm_copy(kernels: Path) -> Path:
    """A kernel folder holding a copy of this session's machine code of the current source (the folders
    kernel_dir()/<prefix>-<source hash> of the two engines, when earlier tests filled them): the probe of the
    original code then loads it instead of compiling it once more; an edited copy's hash names other folders."""
    from fbsgd.engine import chain_kernel  # deferred: the engines' modules name their folders
    from fbsgd.engine import kernel

    kernels.mkdir()
    for module, prefix in ((kernel.__name__, "lockstep"), (chain_kernel.__name__, "chains")):
        folder = provenance.machine_code_dir(module, prefix)
        if folder.is_dir():
            shutil.copytree(folder, kernels / folder.name)
    return kernels


@pytest.mark.slow
def test_an_edit_to_what_the_kernel_calls_runs_new_machine_code(tmp_path):
    """The kernel folder is warm with the original code; a copy of the package with
    an edited constant and an edited function must not run the old machine code."""
    kernels = _warm_copy(tmp_path / "kernels")
    original = _probe(tmp_path, kernels, tmp_path / "cache0")
    assert original["diverged"] == 0

    lowered = _edited_copy(tmp_path, "optimizers.py", "DIVERGENCE_THRESHOLD = 1e8", "DIVERGENCE_THRESHOLD = 1e-3")
    edited = _probe(tmp_path, kernels, tmp_path / "cache1", lowered)
    assert edited["hash"] != original["hash"]
    assert edited["diverged"] == 12  # every run leaves |w_j| <= 1e-3 at once

    shutil.rmtree(lowered)
    flat = _edited_copy(tmp_path, "vecmath.py", "    return _F32_ONE / (_F32_ONE + _exp32(-z))",
                        "    return np.float32(0.5) + np.float32(0.0) * z")
    edited = _probe(tmp_path, kernels, tmp_path / "cache2", flat)
    assert edited["diverged"] == 0
    assert not np.allclose(edited["norms"], original["norms"], rtol=1e-3)


def test_the_key_covers_every_module_a_sweep_imports_and_the_stack():
    closure = provenance.module_closure("fbsgd.engine.sweeps")
    for m in ("fbsgd.engine.lockstep", "fbsgd.metrics", "fbsgd.rng", "fbsgd.perturbations", "fbsgd.problems", "fbsgd.regularizers"):
        assert m in closure
    versions = provenance.stack_versions()
    for lib in ("numpy=", "numba=", "scipy=", "llvmlite="):
        assert lib in versions


def test_an_edit_to_metrics_changes_the_key_and_the_result_is_recomputed(tmp_path):
    edited = _edited_copy(tmp_path, "metrics.py", "def ewma(", "def _unused():\n    pass\n\n\ndef ewma(")
    env = {**os.environ, "PYTHONPATH": str(edited)}
    out = subprocess.run([sys.executable, "-c", "from fbsgd.engine.sweeps import engine_hash; print(engine_hash())"],
                         env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() != S.engine_hash()


def test_a_planted_foreign_entry_is_recomputed_with_one_warning(tmp_path):
    a, b = RunConfig(T=200, gamma=0.05), RunConfig(T=200, gamma=0.2)
    both = run_sweep([a, b], cache_dir=tmp_path, progress=False, n_jobs=1)
    path_a = S._cache_path(tmp_path, S.entry_key(a, 600))
    path_b = S._cache_path(tmp_path, S.entry_key(b, 600))
    shutil.copyfile(path_b, path_a)  # b's valid entry filed under a's key
    with pytest.warns(S.CacheWarning, match=str(path_a)):
        again = run_sweep([a], cache_dir=tmp_path, progress=False, n_jobs=1)
    assert again.computed == 1
    assert again.table.stable_grad_norm.iloc[0] == both.table.stable_grad_norm.iloc[0]
    assert again.table.stable_grad_norm.iloc[0] != both.table.stable_grad_norm.iloc[1]
    # and the entry was overwritten with the right one: no warning now
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = run_sweep([a], cache_dir=tmp_path, progress=False, n_jobs=1)
    assert third.computed == 0


def test_equal_configurations_have_one_key_and_one_result():
    one, other = RunConfig(T=200, gamma=1), RunConfig(T=200, gamma=1.0)
    assert one == other and one.key() == other.key() and one.stream_seed() == other.stream_seed()
    assert isinstance(one.gamma, float) and isinstance(RunConfig(T=200.0).T, int)
    res = run_sweep([one, other], cache_dir=False, progress=False, n_jobs=1)
    assert res.table.stable_grad_norm.iloc[0] == res.table.stable_grad_norm.iloc[1]
    back = RunConfig.from_row(res.table.astype({"gamma": float, "sigma_f": float}).iloc[0])
    assert back.key() == one.key()


def test_trace_points_are_part_of_the_cache_entry(tmp_path):
    cfg = RunConfig(T=2000, gamma=0.1)
    many = run_sweep([cfg], cache_dir=tmp_path, progress=False, n_jobs=1, trace_points=300)
    few = run_sweep([cfg], cache_dir=tmp_path, progress=False, n_jobs=1, trace_points=20)
    assert few.computed == 1
    assert len(few.traces) < len(many.traces) <= 300
    assert few.table.stable_grad_norm.iloc[0] == many.table.stable_grad_norm.iloc[0]


def test_bad_sweep_arguments_are_refused_before_anything_runs(tmp_path):
    cfg = RunConfig(T=200)
    with pytest.raises(ValueError, match="n_jobs must be a non-zero integer"):
        run_sweep([cfg], n_jobs=0, cache_dir=False, progress=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="sweep cache folder .* is not a writable folder"):
        run_sweep([cfg], cache_dir=blocker / "sub", progress=False, n_jobs=1)
    with pytest.raises(ValueError, match="trace_points"):
        run_sweep([cfg], cache_dir=False, progress=False, trace_points=0)


def test_memory_is_estimated_before_a_sweep_starts():
    need = S.memory_needed(2**31 - 1, 10, 8, 2)
    assert need > 24 * 2**30
    with pytest.raises(MemoryError, match="GiB"):
        S.check_memory(2**31 - 1, 10, 8, 2)
    assert S.check_memory(200_000, 10, 8, 2) < 2**30


# --- the core API refuses bad input with errors that name the argument ---------------------------

from fbsgd import perturbations as P  # noqa: E402
from fbsgd.operators import Linear, Tanh  # noqa: E402
from fbsgd.passes import perturbed_passes  # noqa: E402
from fbsgd.problems import LogisticRegression  # noqa: E402


@pytest.mark.parametrize("make,match", [
    (lambda: P.Constant(float("nan")), "Constant: value must be a finite number"),
    (lambda: P.TwoPointNoise(float("nan")), "TwoPointNoise needs a finite number for a"),
    (lambda: P.GaussianNoise(std=float("inf")), "GaussianNoise needs a finite number for std"),
    (lambda: P.UniformNoise(0.0, float("inf")), "UniformNoise needs a finite number for high"),
    (lambda: P.zero_mean_uniform(1.0, dim=0), "zero_mean_uniform needs an integer dim >= 1, got 0"),
    (lambda: P.zero_mean_uniform(1.0, dim=-5), "zero_mean_uniform needs an integer dim >= 1, got -5"),
    (lambda: P.TopK("a"), "TopK needs an integer k >= 1, got 'a'"),
    (lambda: P.RandK(0), "RandK needs an integer k >= 1"),
    (lambda: P.TopK(2, scope="rows"), "TopK: scope must be one of"),
    (lambda: P.at_steps([1.5, 2.7], P.Constant(1.0)), "AtSteps needs an integer steps >= 0, got 1.5"),
    (lambda: P.Round("float7"), "must be one of"),
    (lambda: P.Round("bfloat16", mode="up"), "Round: mode must be one of"),
    (lambda: P.BitFlip(1.5), "BitFlip: rate must be in \\[0, 1\\]"),
    (lambda: P.BitFlip(0.1, field="fraction"), "BitFlip: field must be one of"),
    (lambda: P.ErrorFeedback("topk"), "ErrorFeedback: compressor must be a Perturbation"),
    (lambda: P.Plan(forward={1: 0.5}), "Plan: forward\\[1\\] must be a Perturbation"),
    (lambda: Linear(-1, 3), "Linear needs an integer in_dim >= 1, got -1"),
    (lambda: Tanh(0), "Tanh needs an integer dim >= 1"),
])
def test_constructors_refuse_bad_arguments_by_name(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_non_finite_data_or_weights_are_refused_by_the_passes():
    prob = LogisticRegression.generate(d=3, M=10)
    w = np.zeros(3)
    w[1] = np.nan
    with pytest.raises(ValueError, match="w \\(the weights\\) has 1 non-finite"):
        perturbed_passes(prob.net, prob.data, w)
    x = prob.data.copy()
    x[2, 0] = np.inf
    with pytest.raises(ValueError, match="x \\(the data\\) has 1 non-finite"):
        perturbed_passes(prob.net, x, np.zeros(3))


def test_a_missing_state_is_a_clear_error():
    prob = LogisticRegression.generate(d=3, M=10)
    plan = P.Plan(forward={1: P.zero_mean_uniform(1.0, 3)})
    with pytest.raises(ValueError, match="no state for the perturbation at forward\\[1\\]; pass the state returned by plan.init"):
        perturbed_passes(prob.net, prob.data, np.zeros(3), plan, {})
