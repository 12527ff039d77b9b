"""Outside fbsgd/perturbations.py no module tests a perturbation's class.

Everything the rest of fbsgd needs to know about a perturbation it asks the
object (``p.law``, ``p.schedule``, ``p.compiled()``; see the module docstring of
:mod:`fbsgd.perturbations`).  This test walks the syntax tree of every other
module of the package and fails on

* ``isinstance(x, C)`` / ``issubclass(x, C)`` (C alone, in a tuple or in ``A | B``),
* ``type(x) is C``, ``type(x) == C``, ``type(x) in (C, ...)``, ``x.__class__ is C``,
  and comparisons of ``type(x).__name__`` with a class's name as a string,
* ``match`` class patterns ``case C(...)``,

where C is a perturbation class: ``Perturbation`` or a class of
:mod:`fbsgd.perturbations` derived from it, spelled ``C``, ``P.C``, ``pert.C``, ...
(only the final name counts).
"""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

import fbsgd
from fbsgd.theory import error_bounds as B
from fbsgd.theory import small_step_limits as L
from fbsgd import laws
from fbsgd import perturbations as P
from fbsgd.studies import rates as R
from fbsgd.engine.sweeps import RunConfig

PACKAGE = Path(fbsgd.__file__).resolve().parent
ROOT = PACKAGE.parent
EXEMPT = {"perturbations.py"}  # the one module that may know the classes: it defines them

# Modules that still test perturbation classes (an expected, explicitly listed exception):
PENDING: set = set()  # every module reads the protocol


def perturbation_classes() -> frozenset:
    """Names of ``Perturbation`` and every class of fbsgd.perturbations derived from it."""
    return frozenset(name for name, c in inspect.getmembers(P, inspect.isclass)
                     if c.__module__ == P.__name__ and issubclass(c, P.Perturbation))


def _final_names(node) -> list[str]:
    """The class names an ``isinstance`` second argument (or a comparand) spells:
    ``C`` / ``mod.C`` give C; tuples, lists, sets and ``A | B`` give each member's."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for elt in node.elts for n in _final_names(elt)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _final_names(node.left) + _final_names(node.right)
    if isinstance(node, ast.Starred):
        return _final_names(node.value)
    return []


def _string_names(node) -> list[str]:
    """String constants in ``node`` (alone or in a tuple, list or set)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for elt in node.elts for n in _string_names(elt)]
    return []


def _callee(node) -> str | None:
    if isinstance(node, ast.Call):
        return node.func.id if isinstance(node.func, ast.Name) else (
            node.func.attr if isinstance(node.func, ast.Attribute) else None)
    return None


def _is_type_of(node) -> bool:
    """``type(x)`` or ``x.__class__``."""
    return (_callee(node) == "type" and len(node.args) == 1) or (
        isinstance(node, ast.Attribute) and node.attr == "__class__")


def _is_name_of_type(node) -> bool:
    """``type(x).__name__`` / ``x.__class__.__qualname__``."""
    return isinstance(node, ast.Attribute) and node.attr in ("__name__", "__qualname__") and _is_type_of(node.value)


def class_tests(source: str, filename: str, classes=None) -> list[str]:
    """``"file:line: what"`` for every test of a perturbation class in ``source``."""
    classes = perturbation_classes() if classes is None else classes
    found = []

    def hit(node, what, names):
        named = sorted(set(names) & classes)
        if named:
            found.append(f"{filename}:{node.lineno}: {what} names {', '.join(named)}")

    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Call) and _callee(node) in ("isinstance", "issubclass") and len(node.args) == 2:
            hit(node, f"{_callee(node)}(...)", _final_names(node.args[1]))
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for j, a in enumerate(operands):
                others = operands[:j] + operands[j + 1:]
                if _is_type_of(a):
                    hit(node, "type comparison", [n for o in others for n in _final_names(o)])
                elif _is_name_of_type(a):
                    hit(node, "class-name comparison", [n for o in others for n in _string_names(o)])
        elif isinstance(node, ast.MatchClass):
            hit(node, "match class pattern", _final_names(node.cls))
    return sorted(set(found), key=lambda s: (s.split(":")[0], int(s.split(":")[1]), s))


def package_class_tests() -> dict[str, list[str]]:
    """Module file name -> its class tests, for every module of fbsgd except the exempt ones."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in EXEMPT or "__pycache__" in path.parts:
            continue
        out[rel] = class_tests(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    return out


def test_no_module_outside_perturbations_tests_a_perturbation_class():
    offenders = [o for rel, found in package_class_tests().items() if rel not in PENDING for o in found]
    assert not offenders, ("these modules test a perturbation's class instead of asking its law / schedule "
                           "/ compiled():\n" + "\n".join(offenders))


def test_pending_modules_exist():
    # an exemption for a file that is not there would hide nothing and mislead
    missing = sorted(rel for rel in PENDING if not (PACKAGE / rel).is_file())
    assert not missing, f"PENDING names modules that do not exist: {missing}"


def test_the_classes_are_collected_from_the_module():
    classes = perturbation_classes()
    assert {"Perturbation", "UniformNoise", "GaussianNoise", "TwoPointNoise", "Constant", "Identity",
            "Round", "BitFlip", "TopK", "RandK", "ErrorFeedback", "Every", "AtSteps", "Chain"} <= classes
    assert not {"Law", "Schedule", "Plan", "CompiledOp", "PerturbationState"} & classes


SYNTHETIC = '''\
from fbsgd import perturbations as pert
from fbsgd.perturbations import UniformNoise
import fbsgd.perturbations as _pert

def f(p, op, T):
    if isinstance(p, UniformNoise):
        return 1
    if isinstance(p, (pert.Every, int)):
        return 2
    if issubclass(T, _pert.AtSteps | _pert.Chain):
        return 3
    if type(p) is pert.Constant or type(p) == GaussianNoise:
        return 4
    if type(p) in (TwoPointNoise, float):
        return 5
    if p.__class__ is P.Round:
        return 6
    if type(p).__name__ == "BitFlip":
        return 7
    match p:
        case _pert.TopK(k=k):
            return 8
        case Perturbation():
            return 9
    # none of these test a perturbation class
    if isinstance(op, (int, O.Linear)) or type(op) is O.Tanh or isinstance(p, P.Plan):
        return 10
    raise ValueError(f"{type(p).__name__} is not supported")
'''


def test_the_scan_detects_each_kind_of_class_test():
    found = class_tests(SYNTHETIC, "synthetic.py")
    assert found == [
        "synthetic.py:6: isinstance(...) names UniformNoise",
        "synthetic.py:8: isinstance(...) names Every",
        "synthetic.py:10: issubclass(...) names AtSteps, Chain",
        "synthetic.py:12: type comparison names Constant",
        "synthetic.py:12: type comparison names GaussianNoise",
        "synthetic.py:14: type comparison names TwoPointNoise",
        "synthetic.py:16: type comparison names Round",
        "synthetic.py:18: class-name comparison names BitFlip",
        "synthetic.py:21: match class pattern names TopK",
        "synthetic.py:23: match class pattern names Perturbation",
    ]


def test_the_check_fails_on_an_offender(tmp_path, monkeypatch):
    # the package-wide test itself fails, and says where, when a module tests a class
    (tmp_path / "perturbations.py").write_text("class UniformNoise: pass\n")
    (tmp_path / "clean.py").write_text("def f(p):\n    return p.law.family == 'uniform'\n")
    (tmp_path / "bad.py").write_text("def f(p):\n    return isinstance(p, UniformNoise)\n")
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    with pytest.raises(AssertionError, match=r"bad\.py:2: isinstance\(\.\.\.\) names UniformNoise"):
        test_no_module_outside_perturbations_tests_a_perturbation_class()


# -------------------------------------------------------------------------------------------------
# the modules read the protocol: a perturbation they have never heard of works if it describes itself
# -------------------------------------------------------------------------------------------------


class Described(P.Perturbation):
    """δ ~ U(lo, hi) every ``interval`` steps from ``first`` on, known to fbsgd only through its protocol."""

    def __init__(self, lo, hi, interval, first=0):
        self.lo, self.hi, self.interval, self.first = lo, hi, interval, first

    @property
    def law(self):
        a, b = self.lo, self.hi
        return P.Law("uniform", True, a == -b, 0.5 * (a + b), (a * a + a * b + b * b) / 3.0,
                     (b**5 - a**5) / (5 * (b - a)), bound=max(abs(a), abs(b)), support=(a, b))

    @property
    def schedule(self):
        return P.Schedule(first=self.first, interval=self.interval)

    def apply(self, x, key, step):
        raise AssertionError("not called: only the description is asked for")


def _problem():
    return RunConfig(regularizer="l2", rho=0.1).problem()


def test_the_averaged_bias_pins_the_closed_form():
    prob = _problem()
    a, M = prob.signed_features, prob.M
    w = np.random.default_rng(0).standard_normal(prob.d) * 0.3
    lo, hi, dt = -0.1, 0.4, 3
    z = -a @ w
    sbar = (np.logaddexp(0.0, z + hi) - np.logaddexp(0.0, z + lo)) / (hi - lo)
    expected = -(a.T @ (sbar - expit(z))) / M / dt
    for p in (P.every(dt, P.UniformNoise(lo, hi)), P.every(dt, P.UniformNoise(lo, hi), offset=2), Described(lo, hi, dt, 1)):
        np.testing.assert_array_equal(L.averaged_bias(prob, P.Plan(forward={1: p}), w)[0], expected)
    bl, bh = 0.0, 0.3
    expected_b = -0.5 * (bl + bh) * a.mean(axis=0) / 5
    for p in (P.every(5, P.UniformNoise(bl, bh)), Described(bl, bh, 5)):
        bias, jac = L.averaged_bias(prob, P.Plan(backward={2: p}), w)
        np.testing.assert_array_equal(bias, expected_b)
        assert not jac.any()


@pytest.mark.parametrize("dt", [1, 4])
def test_the_predicted_plateau_of_biased_backward_noise_is_m_abar_over_dt(dt):
    prob = _problem()
    a_bar = np.linalg.norm(prob.signed_features.mean(axis=0))
    h = 0.3
    noise = P.UniformNoise(0.0, h)
    for p in ((noise if dt == 1 else P.every(dt, noise)), P.every(dt, noise, offset=dt - 1), Described(0.0, h, dt)):
        r = L.small_step_limit(prob, P.Plan(backward={2: p}))
        assert not r["escapes"] and r["plateau"] == pytest.approx(0.5 * h * a_bar / dt, rel=1e-9)


def test_limits_refuse_what_has_no_closed_form():
    prob = _problem()
    for p in (P.at_steps(range(0, 100, 2), P.UniformNoise(0.0, 0.3)),  # stops: no long-run average
              P.at_steps([0, 1, 5], P.UniformNoise(0.0, 0.3)),
              P.GaussianNoise(0.1), P.every(2, P.TwoPointNoise(0.1)), P.Constant(0.1), P.Round("bfloat16")):
        with pytest.raises(NotImplementedError, match=r"closed-form limits exist for \(intermittent\) uniform noise only"):
            L.averaged_bias(prob, P.Plan(backward={2: p}), np.zeros(prob.d))


def test_rates_and_bounds_read_a_described_perturbation():
    p, ref = Described(-0.2, 0.5, 4, 2), P.every(4, P.UniformNoise(-0.2, 0.5), offset=2)
    assert B.perturbation_moments(p, 6) == B.perturbation_moments(ref, 6) == B.perturbation_moments(P.UniformNoise(-0.2, 0.5), 6)

    class Config:
        mode, T = "per_sample", 30

        def plan(self):
            return P.Plan(forward={1: p})

    assert R.uniform_ranges(Config()) == ((-0.2, 0.5), None, True)
    np.testing.assert_array_equal(R.active_steps(Config()), [2, 6, 10, 14, 18, 22, 26])


class DescribedGivenInput(Described):
    """The same kind, also describing its law given the input; still never applied."""

    def conditional_law(self, x, *, draws=10, seed=0):
        return laws.UniformLaw(x, self.lo, self.hi).with_schedule(self.schedule)


def test_the_general_limit_reads_the_conditional_law_only():
    # the conditional method asks conditional_law(x) and schedule, never apply (which raises here)
    prob = _problem()
    p, ref = DescribedGivenInput(-0.1, 0.4, 3, 1), P.every(3, P.UniformNoise(-0.1, 0.4), offset=1)
    w = np.random.default_rng(1).standard_normal(prob.d) * 0.3
    np.testing.assert_allclose(L.averaged_direction(prob, P.Plan(forward={1: p}), w),
                               L.averaged_direction(prob, P.Plan(forward={1: ref}), w), rtol=1e-15, atol=0)
    r = L.small_step_limit(prob, P.Plan(backward={2: p}), method="conditional")
    assert r["plateau"] == pytest.approx(L.small_step_limit(prob, P.Plan(backward={2: ref}))["plateau"], rel=1e-8)
