"""The chapters: committed clean, parameterized, checked, and runnable with papermill."""
import ast
import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from papermill.inspection import inspect_notebook

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb")) + sorted((ROOT / "summary").glob("*.ipynb"))


def test_there_are_chapters():
    assert len(CHAPTERS) >= 2


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; strip them before committing"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_headings_carry_no_hand_written_numbers(path):
    """The book numbers sections itself; "## 1. Set-up" would render as "5.2. 1. Set-up"."""
    nb = json.loads(path.read_text())
    numbered = [line for c in nb["cells"] if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if re.match(r"#+\s+\(?\d+[.)]\s", line)]
    assert not numbered, f"{path.name}: headings with hand-written numbers: {numbered}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_one_parameters_cell_with_typed_commented_defaults_then_a_check(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected one cell tagged 'parameters', found {len(tagged)}"
    i = tagged[0]
    for line in nb.cells[i].source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert re.match(r"^\w+: [\w\[\], |]+ = .+  # \S", line), f"{path.name}: parameter line needs a type and a comment: {line!r}"
    nxt = nb.cells[i + 1]
    assert nxt.cell_type == "code" and "P.resolve(" in nxt.source, f"{path.name}: the cell after the parameters must check them"
    described = inspect_notebook(str(path))
    assert described and all(p["inferred_type_name"] != "None" and p["help"] for p in described.values())
    assert "scale" in described and "output_dir" in described


def _first_integer_parameter(path):
    described = inspect_notebook(str(path))
    return next((name for name, p in described.items() if p["inferred_type_name"] == "int"), None)


BAD = {
    "unknown": lambda path: ({"no_such_parameter": 1}, "unknown parameter 'no_such_parameter'"),
    "scale": lambda path: ({"scale": "huge"}, "parameter 'scale' must be one of"),
    "output_dir": lambda path: ({"output_dir": 5}, "parameter 'output_dir' must be a string, got 5"),
    "integer": lambda path: ({_first_integer_parameter(path): "zero"},
                             f"parameter '{_first_integer_parameter(path)}' must be an integer")
    if _first_integer_parameter(path) else ({"scale": 3}, "parameter 'scale' must be one of"),
}


def _bad_runs(path):
    """The BAD cases of a chapter grouped into as few runs as possible (cases that set the same parameter go
    to different runs): the check cell reports every problem of a run in its one ParameterError, so each
    case is still checked, at one kernel start per run instead of one per case."""
    runs = []
    for case in sorted(BAD):
        bad, expected = BAD[case](path)
        run = next((r for r in runs if not set(r[0]) & set(bad)), None)
        if run is None:
            runs.append(({}, []))
            run = runs[-1]
        run[0].update(bad)
        run[1].append(expected)
    return runs


def test_the_bad_cases_are_grouped_without_losing_one():
    for path in CHAPTERS:
        runs = _bad_runs(path)
        for case in BAD:
            bad, expected = BAD[case](path)
            assert any(expected in words and all(k in run and run[k] == v for k, v in bad.items())
                       for run, words in runs), (path.stem, case)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_bad_parameters_stop_at_the_check_cell(path, tmp_path):
    for bad, expected in _bad_runs(path):
        out = tmp_path / "out.ipynb"
        with pytest.raises(pm.PapermillExecutionError) as info:
            pm.execute_notebook(str(path), str(out), parameters=bad, cwd=str(path.parent), kernel_name="python3",
                                progress_bar=False)
        assert info.value.ename == "ParameterError"
        for words in expected:
            assert words in info.value.evalue, (bad, words)
        executed = nbformat.read(out, as_version=4)
        failed = [i for i, c in enumerate(executed.cells) if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
        check = next(i for i, c in enumerate(executed.cells) if "P.resolve(" in c.source)
        assert failed == [check]


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_at_quick_scale(path, quick_book):
    """The chapter as the session's quick-scale book build executed it (tests/chapters/conftest.py: papermill
    injected its output_dir, the build ran it once): no error, its tables in output_dir, its verdicts."""
    executed_path = quick_book.executed_notebook(path)
    assert executed_path.exists(), (f"{path.stem} was not executed by the quick-scale book build (an earlier page "
                                    f"stopped it?):\n{quick_book.log}")
    executed = nbformat.read(executed_path, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{path.stem}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and str(quick_book.output_dir(path)) in injected[0].source
    assert all(c.get("execution_count") for c in executed.cells if c.cell_type == "code" and c.source.strip()), \
        f"{path.stem}: a code cell was not executed"
    results = quick_book.output_dir(path)
    texts = [o.get("data", {}).get("text/plain", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    if path.stem in PAGES_WITHOUT_CLAIMS:
        assert list(results.glob("*.csv")), "every chapter writes its tables to output_dir"
    else:  # the chapters share one output_dir (the back-matter pages read it): this chapter's own verdicts table
        assert (results / f"verdicts_{path.stem}.csv").exists(), "every chapter writes its tables to output_dir"
        assert any(t.startswith(("✔", "✘", "◐", "?")) for t in texts), "every chapter ends in computed verdicts"
        _check_promised_claims(path.stem, results)


PAGES_WITHOUT_CLAIMS = {"status", "tables"}  # pages that report, and judge nothing


def test_every_chapter_declares_the_claims_it_judges():
    from fbsgd.book import claims

    missing = sorted({p.stem for p in CHAPTERS} - PAGES_WITHOUT_CLAIMS - set(claims.chapters()))
    assert not missing, f"chapters without fbsgd/book/claims/<chapter>.py: {missing}"


def _check_promised_claims(chapter, results):
    """Every claim the chapter promises (fbsgd/book/claims/<chapter>.py) was judged, with one of the four outcomes."""
    from fbsgd.book import claims
    from fbsgd.book import verdicts

    if chapter not in claims.chapters():
        return
    table = verdicts.load_results(results)
    table = table[table.chapter == chapter]
    promised = [c.id for c in verdicts.promised(chapter)]
    missing = sorted(set(promised) - set(table.claim_id))
    assert not missing, f"{chapter}: promised claims not judged: {missing}"
    assert set(table.outcome) <= set(verdicts.OUTCOMES), f"{chapter}: unknown outcomes {set(table.outcome)}"
    assert table.rule.str.len().min() > 0 and table.evidence.str.len().min() > 0


# -- the parameters cell is fully visible to papermill ------------------------------------------


def _assigned_names(cell_source):
    names = []
    for node in ast.parse(cell_source).body:
        if isinstance(node, ast.AnnAssign):
            names.append(node.target.id)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets]
    return names


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter(path):
    """`papermill --help-notebook` skips a line with more than one '=' (a '=' in its comment)."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert list(inspect_notebook(str(path))) == _assigned_names(cell.source)


# -- the README's commands, run as written -------------------------------------------------------


def _readme_section_commands(title):
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


README_RUNS = [cmd for cmd in _readme_section_commands("Rerunning a chapter with your own parameters")
               if cmd[0].endswith("papermill") and "--help-notebook" not in cmd]


def test_readme_has_the_rerun_examples():
    assert len(README_RUNS) >= 2
    assert any("-p" in cmd and "layer_scales" in cmd for cmd in README_RUNS)
    assert any("-y" in cmd for cmd in README_RUNS)


@pytest.mark.parametrize("cmd", README_RUNS, ids=lambda c: " ".join(c[3:]))
def test_readme_rerun_example_works(cmd, tmp_path):
    """Run the README's example as written (papermill -p passes "[0.9, 1.1]" as a string), at quick
    scale, with the output notebook and output_dir moved to a temporary folder."""
    cmd = list(cmd)
    assert cmd[1].startswith("chapters/") and cmd[2].endswith(".ipynb")
    cmd[2] = str(tmp_path / "out.ipynb")
    i = cmd.index("output_dir")
    cmd[i + 1] = str(tmp_path / "results")
    env = {**os.environ, "FBSGD_SCALE": "quick"}
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    tables = list((tmp_path / "results").glob("*.csv"))
    assert tables, "the chapter writes its tables to output_dir"
    if Path(cmd[1]).stem == "setting":
        import pandas as pd

        assert sorted(pd.read_csv(tables[0]).scale.unique()) == [0.9, 1.1]


def test_readme_help_notebook_lists_list_parameters():
    cmd = next(c for c in _readme_section_commands("Rerunning a chapter with your own parameters") if "--help-notebook" in c)
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "layer_scales: list" in run.stdout and "output_dir: str" in run.stdout


# -- checks made in the check cell, before anything is computed ----------------------------------


def _run_until_failure(path, parameters, tmp_path):
    """Run a chapter that must stop in its check cell; return (error, seconds)."""
    out = tmp_path / "out.ipynb"
    start = time.perf_counter()
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(path), str(out), parameters=parameters, cwd=str(path.parent), kernel_name="python3", progress_bar=False)
    seconds = time.perf_counter() - start
    assert info.value.ename == "ParameterError"
    executed = nbformat.read(out, as_version=4)
    failed = [i for i, c in enumerate(executed.cells) if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    tagged = next(i for i, c in enumerate(executed.cells) if "parameters" in c.metadata.get("tags", []))
    injected = next((i for i, c in enumerate(executed.cells) if "injected-parameters" in c.metadata.get("tags", [])), tagged)
    assert injected in (tagged, tagged + 1)  # papermill injects a cell only when given parameters
    check = next(i for i, c in enumerate(executed.cells) if i > injected and c.cell_type == "code")  # it also adds markdown banners
    assert failed == [check] and "P.resolve(" in executed.cells[check].source
    assert all(c.get("execution_count") is None for c in executed.cells[check + 1:] if c.cell_type == "code"), "nothing after the check runs"
    return info.value.evalue, seconds


def _file(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a folder")
    return f


CHECKS = {  # name -> (chapter, parameters(tmp_path), environment(tmp_path), expected parts of the message)
    "list-string-malformed": ("setting", lambda t: {"layer_scales": "[0.9, 1.1"}, {},
                              ["parameter 'layer_scales' must be a list of at least 1 numbers each >= 0.01 and <= 10.0, got '[0.9, 1.1'"]),
    "dict-unknown": ("setting", lambda t: {"layer_scale": {"a": 1}}, {},
                     ["unknown parameter 'layer_scale' (did you mean 'layer_scales'?)"]),
    "dict-declared": ("counterexamples", lambda t: {"a3_s": {"a": 1}}, {},
                      ["parameter 'a3_s' must be a number >= -1000000.0 and <= 1000000.0, got {'a': 1}"]),
    "output_dir-file": ("setting", lambda t: {"output_dir": str(_file(t))}, {},
                        ["parameter 'output_dir' must be a writable folder, got '{f}': it exists and is not a folder"]),
    "output_dir-under-file": ("nonzero_mean", lambda t: {"output_dir": str(_file(t) / "sub")}, {},
                              ["parameter 'output_dir' must be a writable folder, got '{f}/sub': cannot create it (Not a directory"]),
    "cache-dir-section7": ("intermittent", lambda t: {}, {"FBSGD_CACHE_DIR": "{f}/sub"},
                           ["environment variable FBSGD_CACHE_DIR must name a writable folder for the sweep cache, "
                            "got '{f}/sub': cannot create it (Not a directory"]),
    "cache-dir-horizons": ("convergence", lambda t: {}, {"FBSGD_CACHE_DIR": "{f}/sub"},
                           ["environment variable FBSGD_CACHE_DIR must name a writable folder"]),
    "n_jobs-0-section7": ("frequent_zero_mean", lambda t: {"n_jobs": 0}, {},
                          ["parameter 'n_jobs' must not be 0 (use -1 for all cores, or a positive count), got 0"]),
    "n_jobs-0-budgets": ("budgets", lambda t: {"n_jobs": 0}, {}, ["parameter 'n_jobs' must not be 0"]),
    "T-below-2-metric_every": ("reproducibility", lambda t: {"T": 100, "metric_every": 60}, {},
                               ["parameter 'T' must be at least 2 * metric_every, got T=100, metric_every=60"]),
    "T_max-not-above-T_min": ("convergence", lambda t: {"T_min": 1000, "T_max": 1000}, {},
                              ["parameter 'T_max' must be larger than 'T_min', got T_min=1000, T_max=1000"]),
    "d-above-m": ("sgd_derivatives", lambda t: {"d": 10, "m": 5}, {},
                  ["parameters 'd' and 'm' need d <= m (a full-rank design), got d=10, m=5"]),
    "all-in-one": ("nonzero_mean",
                   lambda t: {"n_jobs": 0, "T": 30, "metric_every": 20, "output_dir": str(_file(t)), "gamas": {"a": 1}, "seeds": "[0, x]"},
                   {"FBSGD_CACHE_DIR": "{f}/sub"},
                   ["unknown parameter 'gamas' (did you mean 'gammas'?)", "parameter 'seeds' must be a list",
                    "parameter 'output_dir' must be a writable folder", "parameter 'n_jobs' must not be 0",
                    "parameter 'T' must be at least 2 * metric_every", "environment variable FBSGD_CACHE_DIR"]),
}


@pytest.mark.parametrize("case", sorted(CHECKS))
def test_checks_stop_at_the_check_cell(case, tmp_path, monkeypatch):
    chapter, parameters, env, expected = CHECKS[case]
    f = _file(tmp_path)
    monkeypatch.setenv("FBSGD_CACHE_DIR", str(tmp_path / "cache"))
    for k, v in env.items():
        monkeypatch.setenv(k, v.replace("{f}", str(f)))
    message, _ = _run_until_failure(ROOT / "chapters" / f"{chapter}.ipynb", parameters(tmp_path), tmp_path)
    for part in expected:
        assert part.replace("{f}", str(f)) in message
    assert message.count("ParameterError") == 0 and message.rstrip().endswith(".")  # one message, not a traceback


@pytest.mark.parametrize("chapter", ["frequent_zero_mean"])
def test_huge_T_is_refused_before_any_memory_is_taken(chapter, tmp_path, monkeypatch):
    """T = 2**31 - 1 passes the range check, but its sweep needs tens of GiB: refused in the check cell, fast."""
    from fbsgd.engine.sweeps import machine_memory, memory_needed

    T = 2**31 - 1
    if memory_needed(T, 10, n_jobs=-1) <= 0.5 * machine_memory():
        pytest.skip("this machine has enough memory for T = 2**31 - 1")
    monkeypatch.setenv("FBSGD_SCALE", "quick")
    monkeypatch.setenv("FBSGD_CACHE_DIR", str(tmp_path / "cache"))
    message, seconds = _run_until_failure(ROOT / "chapters" / f"{chapter}.ipynb",
                                          {"T": T, "output_dir": str(tmp_path / "results")}, tmp_path)
    assert message.startswith("parameter 'T' is too large for this machine's memory: a sweep with T = 2,147,483,647, metric_every = 10")
    assert "GiB" in message and "lower T" in message
    assert seconds < 60
    written = [p for d in ("results", "cache") for p in (tmp_path / d).rglob("*")]
    assert not written, f"nothing is computed, but these were written: {written}"
