"""Every chapter parameter checked for sense in the check cell, before anything is computed (issue 20):
no repeated values in a list, every format or mode one of the package's own, relations between
parameters as rules, and a ``max_hours`` ceiling with the chapter's cost rules in every chapter.

The check cells are run in this process (the cells before the parameters, the parameters cell, the
values a user would pass, then the check cell), which is what papermill runs up to the refusal."""
import json
import os
from pathlib import Path

import pytest

from fbsgd.studies.section7 import design as X
from fbsgd import lowprec
from fbsgd.studies.real_mechanisms import summary as MSM
from fbsgd.book import params as P
from fbsgd import perturbations as PT

ROOT = Path(__file__).resolve().parents[2]


def _cells(chapter):
    nb = json.loads((ROOT / "chapters" / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    i = next(k for k, c in enumerate(code) if "parameters" in c["metadata"].get("tags", []))
    return ["".join(c["source"]) for c in code[:i]], "".join(code[i]["source"]), "".join(code[i + 1]["source"])


CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb") if _cells(p.stem))


@pytest.fixture
def check_cell(tmp_path, monkeypatch):
    """run(chapter, scale="quick", **values): the chapter's check cell with ``values`` passed as a user
    would; returns the checked parameters (or raises the chapter's ParameterError)."""
    monkeypatch.setenv("FBSGD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", os.environ.get("OPENBLAS_NUM_THREADS", "1"))  # set by some imports cells
    monkeypatch.chdir(tmp_path)

    def run(chapter, scale="quick", **values):
        monkeypatch.setenv("FBSGD_SCALE", scale)
        before, parameters, check = _cells(chapter)
        ns = {"__name__": "__main__"}
        for src in before:
            exec(compile(src, f"{chapter}:imports", "exec"), ns)
        exec(compile(parameters, f"{chapter}:parameters", "exec"), ns)
        ns.update({"output_dir": str(tmp_path / "results"), **values})
        exec(compile(check, f"{chapter}:check", "exec"), ns)
        return ns["params"]

    return run


def refusal(check_cell, chapter, **values) -> str:
    with pytest.raises(P.ParameterError) as info:
        check_cell(chapter, **values)
    return str(info.value)


# -- the reproductions of issue 20 ---------------------------------------------------------------


def test_repeated_step_size_in_real_mechanisms_is_refused(check_cell):
    """gammas [0.1, 0.1] ran, fitted NaN slopes and recorded a wrong ✘ in the ledger."""
    msg = refusal(check_cell, "real_mechanisms", gammas=[0.1, 0.1])
    assert "parameter 'gammas' must not repeat a value (repeated: 0.1): each value is one configuration" in msg


def test_repeated_step_size_in_correctors_is_refused(check_cell):
    """gammas [0.3, 0.3] labelled runs "diverges" although none diverged."""
    msg = refusal(check_cell, "correctors", gammas="[0.3, 0.3]")  # as papermill -p passes it
    assert "parameter 'gammas' must not repeat a value (repeated: 0.3)" in msg


def test_unknown_deep_format_is_refused_in_the_check_cell(check_cell):
    """deep_formats ["float8_e5m2 sideways"] failed in cell 10, after 102 sweep runs, without naming it."""
    msg = refusal(check_cell, "real_mechanisms", deep_formats=["float8_e5m2 sideways"])
    assert ("parameter 'deep_formats' must be a list of at least 1 values from ['bfloat16 nearest', 'bfloat16 stochastic', "
            "'float16 nearest', 'float16 stochastic', 'float8_e4m3fn nearest', 'float8_e4m3fn stochastic', "
            "'float8_e5m2 nearest', 'float8_e5m2 stochastic'], got ['float8_e5m2 sideways']") in msg


def test_more_message_checkpoints_than_the_run_provides_are_refused(check_cell):
    """message_checkpoints 5000 with message_T 2000 silently used 1000: the second half of the run
    has 2000 - 1000 = 1000 iterations."""
    msg = refusal(check_cell, "real_mechanisms", message_checkpoints=5000, message_T=2000)
    assert ("parameter 'message_checkpoints' must be at most the number of iterations in the second half of the clean run, "
            "message_T - message_T // 2 = 1,000 for message_T = 2,000, got 5,000") in msg
    assert check_cell("real_mechanisms", message_checkpoints=1000, message_T=2000)["message_checkpoints"] == 1000
    assert "message_T // 2 = 1,001 for message_T = 2,001, got 1,002" in refusal(
        check_cell, "real_mechanisms", message_checkpoints=1002, message_T=2001)


def test_checkpoint_bound_is_what_the_messages_provide():
    """The bound of the rule is exactly the number of distinct checkpoints that training_messages takes."""
    import numpy as np

    for T in (2, 3, 4, 5, 17, 2000, 2001):
        avail = T - T // 2
        taken = lambda n: len(set(np.linspace(T // 2, T - 1, n).astype(int).tolist()))  # noqa: E731  (as in training_messages)
        assert taken(avail) == avail and taken(avail + 1) == avail
        assert MSM.checkpoints_problem(avail, T) is None and MSM.checkpoints_problem(avail + 1, T) is not None


# -- formats, modes and mechanisms: the package's own lists --------------------------------------


def test_round_formats_are_the_low_precision_formats_of_lowprec():
    assert set(X.ROUND_FORMATS) == {"bfloat16", "float16", "float8_e4m3fn", "float8_e5m2"}
    assert set(X.ROUND_FORMATS) < set(lowprec.FORMATS) and "float32" in lowprec.FORMATS
    assert X.ROUND_MODES == ("nearest", "stochastic")
    for name in MSM.ROUNDINGS:  # every allowed deep-chain name is a rounding the chapter can build
        assert MSM.deep_design([name], 10, 0.1, 0.01, 0.9, 0.001)["mechanisms"] == [PT.Round(*name.split(" "))]
    with pytest.raises(ValueError):
        PT.Round("float8_e5m2", "sideways")


@pytest.mark.parametrize("chapter,values,expected", [
    ("real_mechanisms", {"formats": ["float8"]}, "parameter 'formats' must be a list of at least 1 values from "
                                                 "['bfloat16', 'float16', 'float8_e4m3fn', 'float8_e5m2'], got ['float8']"),
    ("real_mechanisms", {"modes": ["nearest", "up"]}, "parameter 'modes' must be a list of at least 1 values from "
                                                      "['nearest', 'stochastic']"),
    ("real_mechanisms", {"formats": ["float16", "float16"]}, "parameter 'formats' must not repeat a value (repeated: 'float16')"),
    ("real_mechanisms", {"deep_formats": ["float16 nearest", "float16 nearest"]},
     "parameter 'deep_formats' must not repeat a value (repeated: 'float16 nearest')"),
    ("correctors", {"fmt": "float8_e5m2 nearest"}, "parameter 'fmt' must be one of ['bfloat16', 'float16', 'float8_e4m3fn', "
                                                   "'float8_e5m2'], got 'float8_e5m2 nearest'"),
    ("frequent_zero_mean", {"mode": "batch"}, "parameter 'mode' must be one of ['per_sample', 'shared'], got 'batch'"),
])
def test_names_of_formats_and_modes_are_checked(check_cell, chapter, values, expected):
    assert expected in refusal(check_cell, chapter, **values)


# -- relations between parameters ----------------------------------------------------------------


@pytest.mark.parametrize("values,expected", [
    ({"keep_fractions": [0.0001, 0.5]},
     "parameter 'keep_fractions' must keep at least one of the M = 2,000 samples of the batch (k = round(q M) >= 1, so "
     "q > 0.00025), got 0.0001 (k = 0: Top-K and Rand-K would silently keep 1)"),
    ({"keep_fractions": [0.1, 0.1002]},
     "parameter 'keep_fractions' must give a different number of kept samples k = round(q M) of the M = 2,000 samples for "
     "each fraction, got 0.1 and 0.1002 each keep k = 200 (the same Top-K and Rand-K twice)"),
    ({"flip_rates": [1e-4, 1.0000001e-4]},
     "parameter 'flip_rates' must not hold two values that the chapter names alike in its tables (0.0001 and 0.00010000001 "
     "are both named '0.0001'): their rows would be merged into one"),
    ({"atlas_rates": [1e-7, 1.0000001e-7, 1e-6]}, "parameter 'atlas_rates' must not hold two values that the chapter names alike"),
])
def test_real_mechanisms_relations(check_cell, values, expected):
    assert expected in refusal(check_cell, "real_mechanisms", **values)


def test_keep_fraction_bound_is_that_of_the_mechanism_set():
    """q > 0.5 / M is exactly where the mechanism set stops raising k = 0 to 1 (M = 2000)."""
    M = 2000
    for q, k in ((0.00025, 0), (0.0002501, 1), (0.1, 200), (1.0, 2000)):
        _, mechs = MSM.mechanism_set([], [], [q], [], M)
        assert mechs[0] == PT.TopK(max(k, 1), "batch")
        assert (MSM.keep_fractions_problem([q]) is None) == (k >= 1)


@pytest.mark.parametrize("values,expected", [
    ({"a3_s": 0.0}, "parameter 'a3_s' must not be 0: the start w₁ = (0, 0) is the minimum"),
    ({"a3_offset": 0.0}, "parameter 'a3_offset' must move the nudged start (s, s + offset) off (s, s)"),
    ({"a3_s": 1e6, "a3_offset": 1e-12}, "got a3_s=1000000.0, a3_offset=1e-12, and s + offset == s in float64"),
])
def test_counterexamples_a3_start(check_cell, values, expected):
    assert expected in refusal(check_cell, "counterexamples", **values)


def test_counterexamples_a3_start_that_moves_is_accepted(check_cell):
    assert 1.0 + 1e-12 != 1.0
    assert check_cell("counterexamples", a3_s=1.0, a3_offset=1e-12)["a3_offset"] == 1e-12


def test_figure3_needs_two_step_sizes(check_cell):
    """Figure 3's verdict compares S at the largest and the smallest of fig3_gammas: one value gave a gain of 1."""
    msg = refusal(check_cell, "frequent_zero_mean", fig3_gammas=[0.1])
    assert "parameter 'fig3_gammas' must be a list of at least 2 numbers" in msg


def test_intermittent_panels_named_alike_are_refused(check_cell):
    msg = refusal(check_cell, "intermittent", sigma_f_panels=[1.0, 1.0000001])
    assert "parameter 'sigma_f_panels' must not hold two values that the chapter names alike" in msg


def test_correctors_debias_levels_named_alike_are_refused(check_cell):
    msg = refusal(check_cell, "correctors", sigma_f_debias=[2.0, 2.0000001])
    assert "parameter 'sigma_f_debias' must not hold two values that the chapter names alike" in msg


def test_error_propagation_refuses_repeats_it_used_to_drop(check_cell):
    """[2, 2, 4] passed min_len = 3 and was silently cut to two depths; now refused, and valid values are sorted."""
    assert "parameter 'linear_depths' must not repeat a value (repeated: 2)" in refusal(
        check_cell, "error_propagation", linear_depths=[2, 2, 4])
    params = check_cell("error_propagation", linear_depths=[8, 2, 4])
    assert params["linear_depths"] == [8, 2, 4]  # as given; the notebook's own variable is sorted (below)


def test_a_point_may_repeat_a_coordinate(check_cell):
    assert check_cell("forward_gradients", beale_point=[1.0, 1.0])["beale_point"] == [1.0, 1.0]


# -- every list parameter of every chapter, and every chapter's defaults --------------------------

REPEATS_ALLOWED = {("forward_gradients", "beale_point")}  # the coordinates of a point
WITHOUT_LISTS = {"convergence"}  # its horizons are T_min..T_max, per_decade


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_list_parameter_refuses_a_repeat(check_cell, chapter):
    defaults = check_cell(chapter)
    lists = {k: v for k, v in defaults.items() if isinstance(v, list)}
    assert bool(lists) == (chapter not in WITHOUT_LISTS)
    for name, value in lists.items():
        bad = value[:-1] + [value[0]] if len(value) >= 2 else [value[0], value[0]]
        if (chapter, name) in REPEATS_ALLOWED:
            assert check_cell(chapter, **{name: bad})[name] == bad
        else:
            assert f"parameter {name!r} must not repeat a value (repeated: {value[0]!r})" in refusal(
                check_cell, chapter, **{name: bad})


@pytest.mark.parametrize("scale", ["paper", "quick"])
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_defaults_pass_every_check(check_cell, chapter, scale):
    params = check_cell(chapter, scale=scale)
    assert params["scale"] == scale and params["max_hours"] == 3.0


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_has_max_hours_and_its_cost_rules(check_cell, chapter):
    _, parameters, check = _cells(chapter)
    assert ("max_hours: float = 3.0  # refuse to start when the estimated run time exceeds this many hours "
            "(raise it if you mean it)\n") in parameters
    assert "max_hours=P.Float(min=0.0)" in check and f'*costs.rules("{chapter}")' in check
    assert "from fbsgd.book import costs" in check
    assert "parameter 'max_hours' must be a number >= 0.0, got -1.0" in refusal(check_cell, chapter, max_hours=-1.0)
