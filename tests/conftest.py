import numpy as np
import pytest


def central_difference(f, x, h=1e-6):
    """Jacobian-free directional check helper: returns d/dt f(x + t e_k) for all k."""
    x = np.asarray(x, dtype=float)
    grads = []
    for k in range(x.size):
        e = np.zeros_like(x)
        e.flat[k] = h
        grads.append((f(x + e) - f(x - e)) / (2 * h))
    return np.array(grads)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# -- the Verdicts that the studies' tests build, recorded while they run ---------------------------------
# tests/book/test_verdict_fields.py checks the fields of every Verdict the studies' unit tests build on their
# synthetic inputs.  It used to run those tests a second time, in a pytest session of its own; when this session
# runs them all (none deselected), it reads what they built here instead, after them (it is moved to the end).

STUDY_RECORD = pytest.StashKey[dict]()
VERDICT_FIELDS = "tests/book/test_verdict_fields.py"


def _study_file(item) -> str | None:
    parts = item.nodeid.split("::")[0].split("/")
    return "/".join(parts[2:]) if parts[:2] == ["tests", "studies"] else None


def pytest_configure(config):
    config.stash[STUDY_RECORD] = {"built": [], "ran": set(), "deselected": set(), "collected": {}}


def pytest_deselected(items):
    for item in items:
        f = _study_file(item)
        if f is not None:
            item.config.stash[STUDY_RECORD]["deselected"].add(f)


def pytest_collection_modifyitems(session, config, items):
    record = config.stash[STUDY_RECORD]
    for item in items:
        f = _study_file(item)
        if f is not None:
            record["collected"].setdefault(f, set()).add(item.nodeid)
    last = [i for i in items if i.nodeid.startswith(VERDICT_FIELDS)]
    if last:
        items[:] = [i for i in items if not i.nodeid.startswith(VERDICT_FIELDS)] + last


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    f = _study_file(item)
    if f is None:
        yield
        return
    from fbsgd.book import verdicts as V  # deferred: only when a study's test runs
    from tests.book.test_verdict_fields import _builder_of_caller  # deferred: the test module owns the rule

    record = item.config.stash[STUDY_RECORD]
    original = V.Verdict.__post_init__

    def recording(verdict):
        original(verdict)
        where = _builder_of_caller()
        if where is not None:
            record["built"].append((f, where, verdict))

    V.Verdict.__post_init__ = recording
    try:
        yield
    finally:
        V.Verdict.__post_init__ = original
        record["ran"].add(item.nodeid)
