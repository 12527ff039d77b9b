"""Every verdict of the book states its key number and its threshold.

A quick-scale build of every chapter would check this on real runs, but takes too long for the unit
tests; instead the studies' own unit tests are run (in a pytest session of their own) on the synthetic
inputs they already use, every :class:`~fbsgd.book.verdicts.Verdict` built meanwhile is recorded with
the study function that built it, and then: every function of a study module that builds a Verdict
(found in its source) must have built at least one, and each one built must carry a key number with its
label and a threshold.  The chapters on real mechanisms and on correctors are left out: they are being
rebuilt, and declare these fields with their rerun.
"""
from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import pytest

from fbsgd.book import verdicts as V

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ROOT / "fbsgd" / "studies"
EXCLUDED = ("real_mechanisms", "correctors", "formats")  # chapters whose verdicts their own study tests check
# the studies' unit tests that build verdicts on synthetic inputs
STUDY_TESTS = ["setting/test_verdicts.py", "counterexamples/test_verdicts.py", "error_propagation/test_verdicts.py",
               "convergence/test_study.py", "convergence/test_summary.py", "budgets/test_verdicts.py",
               "section7/test_verdicts.py", "section7/test_reproducibility.py", "forward_gradients/test_verdicts.py",
               "forward_gradients/test_summary.py", "sgd_derivatives/test_verdicts.py", "sgd_derivatives/test_summary.py"]
# verdict paths that the owners of those modules still have to give a key number (each one named, with why)
KNOWN_GAPS = {
    ("fbsgd.studies.convergence.study", "section4_verdict"): "its unresolved path (no perturbed setting) has no key number",
    ("fbsgd.studies.section7.reproducibility", "fig3_sigma_f_verdict"): "its unresolved path (a level missing) has none",
}


def _builders() -> set[tuple[str, str]]:
    """(module, function) of every top-level function of a study module whose body calls ``Verdict(``."""
    out = set()
    for path in sorted(STUDIES.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if any(part in EXCLUDED for part in rel.parts):
            continue
        module = ".".join(rel.parts)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for call in ast.walk(node):
                    if isinstance(call, ast.Call) and (getattr(call.func, "id", None) == "Verdict"
                                                       or getattr(call.func, "attr", None) == "Verdict"):
                        out.add((module, node.name))
                        break
    return out


def _builder_of_caller() -> tuple[str, str] | None:
    """The study function (module, name) on the call stack that is building a Verdict."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("fbsgd.studies."):
            return module, frame.f_code.co_name
        frame = frame.f_back
    return None


class _Recorder:
    """A pytest plugin that records every Verdict built during the session it is given to."""

    def __init__(self):
        self.built: list[tuple[tuple[str, str], V.Verdict]] = []
        self._original = None

    def pytest_sessionstart(self, session):
        self._original = V.Verdict.__post_init__
        built, original = self.built, self._original

        def recording(verdict):
            original(verdict)
            where = _builder_of_caller()
            if where is not None:
                built.append((where, verdict))

        V.Verdict.__post_init__ = recording

    def pytest_sessionfinish(self, session, exitstatus):
        V.Verdict.__post_init__ = self._original


def _recorded_in_this_session(config):
    """The Verdicts the studies' tests built in this session (tests/conftest.py records them), when every test of
    every file of STUDY_TESTS was collected, none deselected, and all have run; else None."""
    from tests.conftest import STUDY_RECORD  # deferred: the session's record, kept by the root conftest

    record = config.stash.get(STUDY_RECORD, None)
    if record is None or record["deselected"] & set(STUDY_TESTS) or not set(STUDY_TESTS) <= set(record["collected"]):
        return None
    if not all(record["collected"][f] <= record["ran"] for f in STUDY_TESTS):
        return None
    return [(where, v) for f, where, v in record["built"] if f in STUDY_TESTS]


@pytest.fixture(scope="module")
def built(request):
    recorded = _recorded_in_this_session(request.config)
    if recorded is not None:  # the studies' tests ran in this session: what they built, without running them again
        return [(where, v) for where, v in recorded if not any(x in where[0] for x in EXCLUDED)]
    recorder = _Recorder()
    code = pytest.main([str(ROOT / "tests" / "studies" / f) for f in STUDY_TESTS]
                       + ["-q", "-m", "not slow", "-p", "no:cacheprovider", "--no-header", "-o", "addopts="],
                       plugins=[recorder])
    assert V.Verdict.__post_init__ is recorder._original  # restored
    assert code in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), f"the studies' tests did not run: {code!r}"
    return [(where, v) for where, v in recorder.built if not any(x in where[0] for x in EXCLUDED)]


def test_the_builders_are_found_in_every_study():
    found = _builders()
    chapters = {m.split(".")[2] for m, _ in found}
    assert chapters == {"setting", "counterexamples", "error_propagation", "convergence", "budgets", "section7",
                        "forward_gradients", "sgd_derivatives"}
    assert ("fbsgd.studies.budgets.verdicts", "section53_verdict") in found
    assert not any(x in m for m, _ in found for x in EXCLUDED)


def test_every_verdict_building_function_was_run(built):
    ran = {where for where, _ in built}
    missing = sorted(_builders() - ran)
    assert not missing, f"verdict-building functions that no synthetic input reached: {missing}"


def _problems(where, v) -> list[str]:
    """What a verdict lacks: a key number with its label (NaN only when unresolved), a threshold."""
    problems = []
    if v.key_number is None or not v.key_label.strip():
        problems.append("no key number")
    elif math.isnan(v.key_number) and v.outcome != "unresolved":
        problems.append(f"key number NaN on a decided outcome ({v.outcome})")
    if not v.threshold.strip():
        problems.append("no threshold")
    if where in KNOWN_GAPS and v.outcome == "unresolved" and problems == ["no key number"]:
        return []
    return problems


def test_every_verdict_has_a_key_number_and_a_threshold(built):
    bad = [f"{where[0]}.{where[1]} ({v.claim.id}, {v.outcome}): {', '.join(p)}"
           for where, v in built for p in [_problems(where, v)] if p]
    assert len(built) > 100
    assert not bad, "verdicts without their fields:\n" + "\n".join(sorted(set(bad)))


def test_the_check_catches_a_verdict_without_its_fields():
    where = ("fbsgd.studies.setting.verdicts", "judge_closed_form")
    claim = V.Claim("t.x", "t", "-", "paper", "x")
    assert _problems(where, V.Verdict(claim, "holds", "rule", "evidence")) == ["no key number", "no threshold"]
    assert _problems(where, V.Verdict(claim, "holds", "r", "e", 1.0, "k")) == ["no threshold"]
    assert _problems(where, V.Verdict(claim, "fails", "r", "e", float("nan"), "k", threshold="< 1")) == [
        "key number NaN on a decided outcome (fails)"]
    assert _problems(where, V.Verdict(claim, "unresolved", "r", "e", float("nan"), "k", threshold="< 1")) == []
    # a threshold declared with the claim is the verdict's when its function states none
    assert _problems(where, V.Verdict(V.Claim("t.y", "t", "-", "paper", "y", threshold="< 1"), "holds", "r", "e", 0.5,
                                      "k")) == []
    # a known gap excuses only a missing key number on an unresolved verdict
    gap = ("fbsgd.studies.convergence.study", "section4_verdict")
    assert _problems(gap, V.Verdict(claim, "unresolved", "r", "e", threshold="x")) == []
    assert _problems(gap, V.Verdict(claim, "holds", "r", "e", threshold="x")) == ["no key number"]
