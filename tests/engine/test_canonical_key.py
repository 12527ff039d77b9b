"""One configuration, one key: the cache key and the random streams of a sweep configuration are
built from the canonical form of its perturbations (fbsgd.perturbations.canonical), never from a
repr that can vary; a researcher's own kind is identified by its fields and its class's code."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass

import numpy as np
import pytest

from fbsgd import perturbations as P
from fbsgd.engine.sweeps import RunConfig, run_sweep

X = P.zero_mean_uniform(4.0, 10)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FBSGD_CACHE_DIR", str(tmp_path / "cache"))


def _result(cfg):
    """The run of one configuration alone, computed (no cache): (stable norm, EWMA trace)."""
    res = run_sweep([cfg], cache_dir=False, progress=False, n_jobs=1)
    return res.table.stable_grad_norm.iloc[0], res.traces.ewma.to_numpy()


# ---------------------------------------------------------------------------------------------------------
# equal built-in configurations
# ---------------------------------------------------------------------------------------------------------


def _equal_schedules():
    """The perturbation U(-a, a) at steps 0, 8, 16, written seven ways."""
    return [P.at_steps([0, 8, 16], X), P.at_steps([16, 8, 0], X), P.at_steps({16, 0, 8}, X),
            P.at_steps(np.array([16, 8, 0], dtype=np.int64), X), P.at_steps([np.int32(8), 16.0, 0], X),
            P.at_steps(P.Schedule.of_steps([16, 0, 8, 8]).steps_before(100), X), P.budget(3, 24, X)]


def test_equal_schedules_one_key_one_stream_same_bits():
    perts = _equal_schedules()
    assert all(p == perts[0] for p in perts)  # the fact: equal objects ...
    configs = [RunConfig(T=200, forward=p) for p in perts]
    assert all(c == configs[0] and hash(c) == hash(configs[0]) for c in configs)
    # ... get one key and one stream, forward or backward
    assert len({c.key() for c in configs}) == 1 and len({c.stream_seed() for c in configs}) == 1
    back = [RunConfig(T=200, backward=p) for p in perts]
    assert len({c.key() for c in back}) == 1 and len({c.stream_seed() for c in back}) == 1
    # a different schedule is a different configuration
    other = RunConfig(T=200, forward=P.at_steps([0, 8, 16, 24], X))
    assert other.key() != configs[0].key() and other.stream_seed() != configs[0].stream_seed()
    # each run computed on its own gives the same bits
    first, first_trace = _result(configs[0])
    for c in configs[1:3]:
        norm, trace = _result(c)
        assert norm == first
        np.testing.assert_array_equal(trace, first_trace)
    assert _result(other)[0] != first


def test_one_and_one_point_zero_are_one_configuration():
    pairs = [(P.UniformNoise(-1, 1), P.UniformNoise(np.float32(-1.0), 1.0)),
             (P.BitFlip(1, "sign"), P.BitFlip(1.0, "sign")),
             (P.every(10, P.Round("bfloat16")), P.every(np.int64(10), P.Round("bfloat16"))),
             (P.every(10.0, X, 0), P.every(10, X, np.int8(0)))]
    for a, b in pairs:
        assert a == b
        ca, cb = RunConfig(T=200, forward=a), RunConfig(T=200, forward=b)
        assert ca.key() == cb.key() and ca.stream_seed() == cb.stream_seed()
    norm_a, trace_a = _result(RunConfig(T=200, forward=pairs[2][0]))
    norm_b, trace_b = _result(RunConfig(T=200, forward=pairs[2][1]))
    assert norm_a == norm_b
    np.testing.assert_array_equal(trace_a, trace_b)


def test_canonical_form_of_builtin_kinds_is_their_sorted_repr():
    # for the kinds the book runs, the canonical form is the dataclass repr (so no key of the book changed)
    for p in (P.Round("float8_e5m2", "stochastic"), P.BitFlip(1e-7, "exponent"), P.UniformNoise(-0.25, 0.5, False),
              P.every(10, X, 3), P.chain(X, P.Round("float16"))):
        assert P.canonical(p) == repr(p)
    assert P.canonical(P.at_steps([16, 8, 0], X)) == f"AtSteps(steps=frozenset({{0, 8, 16}}), inner={X!r})"
    assert P.canonical(P.at_steps([], X)) == f"AtSteps(steps=frozenset(), inner={X!r})"


@dataclass(frozen=True)
class _Fields(P.Perturbation):
    scale: float
    count: int
    anything: object = None
    flag: bool = True


def test_numbers_normalised_by_the_field_annotation():
    same = [_Fields(1, 3, 2.0), _Fields(1.0, 3.0, 2), _Fields(np.float64(1.0), np.int64(3), np.int16(2), 1)]
    assert all(p == same[0] for p in same)
    assert len({P.canonical(p) for p in same}) == 1
    assert "scale=1.0, count=3, anything=2, flag=True" in P.canonical(same[0])
    assert P.canonical(_Fields(-0.0, 0)) == P.canonical(_Fields(0.0, 0))
    assert P.canonical(_Fields(0.5, 3)) != P.canonical(_Fields(0.25, 3))
    with pytest.raises(ValueError, match=r"_Fields: field 'scale' .* NaN"):
        P.canonical(_Fields(float("nan"), 3))


# ---------------------------------------------------------------------------------------------------------
# a researcher's own kind
# ---------------------------------------------------------------------------------------------------------

_KIND = """
from fbsgd.perturbations import CompiledOp, Law, Perturbation

HALF = 0.5


def widen(a):
    return {widen}


class MyNoise(Perturbation):
    \"\"\"U({low}, widen(a)): a researcher's own kind the compiled engine can run.\"\"\"

    def __init__(self, a):
        self.a = a

    @property
    def law(self):
        return Law("uniform", True, False)

    def compiled(self):
        return CompiledOp("uniform", ({low}, widen(self.a)), True)
"""


def _module(path, name, low="-self.a", widen="a"):
    path.write_text(_KIND.format(low=low, widen=widen))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_editing_a_user_kind_changes_its_key(tmp_path):
    v1 = _module(tmp_path / "kind_v1.py", "fbsgd_test_kind_v1")
    v2 = _module(tmp_path / "kind_v2.py", "fbsgd_test_kind_v2", low="0.0")  # the body edited: biased noise
    v3 = _module(tmp_path / "kind_v3.py", "fbsgd_test_kind_v3", widen="a * HALF")  # only a helper it calls edited
    twin = _module(tmp_path / "kind_twin.py", "fbsgd_test_kind_twin")  # the same source in another file
    a, b, c, d = (RunConfig(T=200, forward=m.MyNoise(0.3)) for m in (v1, v2, v3, twin))
    assert type(a.forward).__name__ == type(b.forward).__name__ == "MyNoise"
    assert len({a.key(), b.key(), c.key()}) == 3 and len({a.stream_seed(), b.stream_seed(), c.stream_seed()}) == 3
    assert d.key() == a.key() and d.stream_seed() == a.stream_seed()
    # a module-level constant it uses is part of the code
    before = c.key()
    v3.HALF = 0.25
    assert c.key() != before
    # the stale-entry case: the edited kind is computed, not served the first version's entry
    cache = tmp_path / "cache"
    first = run_sweep([a], cache_dir=cache, progress=False, n_jobs=1)
    edited = run_sweep([b], cache_dir=cache, progress=False, n_jobs=1)
    assert edited.computed == 1 and edited.from_cache == 0
    assert edited.table.stable_grad_norm.iloc[0] == _result(b)[0] != first.table.stable_grad_norm.iloc[0]
    again = run_sweep([d], cache_dir=cache, progress=False, n_jobs=1)  # the same code: one entry
    assert again.from_cache == 1 and again.table.stable_grad_norm.iloc[0] == first.table.stable_grad_norm.iloc[0]


def test_a_kind_without_source_is_identified_by_its_code():
    def define(body):  # as in an interactive session: no file to read the source from
        mod = types.ModuleType("fbsgd_test_interactive")
        exec(compile(textwrap.dedent(f"""
            from fbsgd.perturbations import Perturbation
            class K(Perturbation):
                def __init__(self, r):
                    self.r = r
                def apply(self, x, key, step):
                    return {body}
            """), "<stdin>", "exec"), mod.__dict__)
        return mod.K(2.0)
    one, same, other = define("x * self.r"), define("x * self.r"), define("x + self.r")
    assert P.canonical(one) == P.canonical(same) != P.canonical(other)
    assert "0x" not in P.canonical(one) and P.canonical(one).startswith("K<source:")


_PLAIN = """
import sys
from fbsgd.perturbations import CompiledOp, Law, Perturbation, canonical
from fbsgd.engine.sweeps import RunConfig, run_sweep


class Plain(Perturbation):  # not a dataclass: its repr has a memory address
    def __init__(self, a):
        self.a = a
        self.tags = {"alpha", "beta", "gamma", "delta"}  # a set of strings: its order varies with the hash seed

    @property
    def law(self):
        return Law("uniform", True, True)

    def compiled(self):
        return CompiledOp("uniform", (-self.a, self.a), True)


cfg = RunConfig(T=200, forward=Plain(0.4), seed=0)
norm = run_sweep([cfg], cache_dir=False, progress=False, n_jobs=1).table.stable_grad_norm.iloc[0]
print(repr(cfg.forward), canonical(cfg.forward), cfg.key(), cfg.stream_seed(), float(norm).hex(), sep="\\n")
"""


def test_plain_class_kind_same_key_in_two_processes(tmp_path):
    script = tmp_path / "plain_kind.py"
    script.write_text(_PLAIN)
    outs = []
    for hash_seed in ("1", "2"):
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                             env={**_env(), "PYTHONHASHSEED": hash_seed}, timeout=600)
        assert run.returncode == 0, run.stderr
        outs.append(run.stdout.split("\n"))
    (repr1, canon1, key1, seed1, norm1), (repr2, canon2, key2, seed2, norm2) = (o[:5] for o in outs)
    assert repr1 != repr2  # the repr differs between the processes (its memory address) ...
    assert (canon1, key1, seed1, norm1) == (canon2, key2, seed2, norm2)  # ... the identity and the result do not
    assert "frozenset({'alpha', 'beta', 'delta', 'gamma'})" in canon1


_WORKERS = """
import sys, warnings
from fbsgd.perturbations import CompiledOp, Law, Perturbation
from fbsgd.engine.sweeps import CacheWarning, RunConfig, run_sweep


def width(a):
    return 2 * a


class Plain(Perturbation):
    def __init__(self, a):
        self.a = a

    @property
    def law(self):
        return Law("uniform", True, False)

    def compiled(self):
        return CompiledOp("uniform", (-self.a, width(self.a)), True)


if __name__ == "__main__":
    configs = [RunConfig(T=200, forward=Plain(a)) for a in (0.1, 0.2)]
    first = run_sweep(configs, cache_dir=sys.argv[1], n_jobs=2, chunk_size=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        second = run_sweep(configs, cache_dir=sys.argv[1], n_jobs=2, chunk_size=1, progress=False)
    print(first.computed, second.from_cache)
"""


def test_a_main_script_kind_keeps_its_identity_in_worker_processes(tmp_path):
    # the workers receive the class by value (they cannot read the script's source): the entries they
    # write must carry the identity the parent expects, so the second sweep is served from the cache
    script = tmp_path / "workers_kind.py"
    script.write_text(_WORKERS)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "cache")], capture_output=True, text=True,
                         cwd=tmp_path, env=_env(), timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["2", "2"]


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}


class _Holder(P.Perturbation):
    def __init__(self, **fields):
        self.__dict__.update(fields)

    @property
    def law(self):
        return P.Law("uniform", True, True)

    def compiled(self):
        return P.CompiledOp("uniform", (-0.1, 0.1), True)


@pytest.mark.parametrize("field, value, why", [
    ("fn", lambda x: x, "it is a lambda"),
    ("handle", "file", "it is an object of type TextIOWrapper"),
    ("thing", object(), "it is an object of type object"),
    ("rate", float("nan"), "it is NaN"),
])
def test_a_field_without_canonical_form_is_refused_with_its_name(tmp_path, field, value, why):
    if value == "file":
        value = open(tmp_path / "f.txt", "w")
    try:
        p = _Holder(**{field: value})
        with pytest.raises(ValueError, match=rf"_Holder: field '{field}' cannot be put in canonical form .*{why}"):
            P.canonical(p)
        with pytest.raises(ValueError, match=rf"RunConfig: forward: _Holder: field '{field}'.*{why}"):
            RunConfig(T=200, forward=p)
    finally:
        if hasattr(value, "close"):
            value.close()


# ---------------------------------------------------------------------------------------------------------
# Plan's arguments
# ---------------------------------------------------------------------------------------------------------


def test_plan_refuses_what_is_not_a_dict_of_operator_indices():
    p = P.Identity()
    with pytest.raises(TypeError, match=r"Plan: forward must be a dict from operator index \(an int >= 1\) to "
                                        r"Perturbation.*its key '1' is a str"):
        P.Plan(forward={"1": p})
    with pytest.raises(TypeError, match=r"Plan: forward must be a dict .*got a list"):
        P.Plan(forward=[p])
    with pytest.raises(TypeError, match=r"Plan: backward must be a dict from operator index \(an int >= 2\).*got a list"):
        P.Plan(backward=[p])
    with pytest.raises(TypeError, match=r"Plan: backward .*its key True is a bool"):
        P.Plan(backward={True: p})
    assert P.Plan(forward={np.int64(1): p}, backward={2: p}).places()  # numpy ints are operator indices


def test_editing_a_library_kind_the_engine_does_not_import_changes_its_key(tmp_path, monkeypatch):
    """fbsgd.correctors (delta compression, de-biasing) is not imported by the engine, so the engine's own
    source hash cannot see an edit to it; the key adds the source of the modules that define a
    configuration's objects, nested ones included."""
    from fbsgd import correctors as Co
    from fbsgd.engine import chains as CH
    from fbsgd.engine import provenance as PV

    nested = Co.DeltaCompression(P.Round("bfloat16"))
    assert PV.defining_modules(P.every(3, nested)) == {"fbsgd.correctors", "fbsgd.perturbations"}
    assert PV.objects_hash([P.TopK(3), None, P.Round("bfloat16")]) == ""  # the engine hashes fbsgd.perturbations
    from fbsgd.operators import Linear, LogisticLoss
    from fbsgd.passes import Composite
    from fbsgd.problems import Dataset

    data = Dataset(np.ones((4, 2)), np.array([1.0, -1.0, 1.0, -1.0]))
    chain = CH.ChainConfig(Composite([Linear(2, 1), LogisticLoss()]), data, backward={2: nested})
    before = [RunConfig(backward=nested).key(), RunConfig(backward=P.TopK(3)).key(), chain.key()]
    edited = tmp_path / "correctors.py"
    edited.write_text(PV._path("fbsgd.correctors").read_text() + "\n# an edit\n")
    real = PV._path
    monkeypatch.setattr(PV, "_path", lambda m: edited if m == "fbsgd.correctors" else real(m))
    PV._modules_hash.cache_clear()
    try:
        after = [RunConfig(backward=nested).key(), RunConfig(backward=P.TopK(3)).key(), chain.key()]
    finally:
        PV._modules_hash.cache_clear()
    assert after[0] != before[0] and after[1] == before[1] and after[2] != before[2]
