"""The chapters: committed clean, parameterized, checked, and runnable with papermill."""
import json
import os
import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from papermill.inspection import inspect_notebook

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def test_there_are_chapters():
    assert len(CHAPTERS) >= 2


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; strip them before committing"


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
    return next(name for name, p in described.items() if p["inferred_type_name"] == "int")


BAD = {
    "unknown": lambda path: ({"no_such_parameter": 1}, "unknown parameter 'no_such_parameter'"),
    "scale": lambda path: ({"scale": "huge"}, "parameter 'scale' must be one of"),
    "output_dir": lambda path: ({"output_dir": 5}, "parameter 'output_dir' must be a string, got 5"),
    "integer": lambda path: ({_first_integer_parameter(path): "zero"},
                             f"parameter '{_first_integer_parameter(path)}' must be an integer"),
}


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_parameters_stop_at_the_check_cell(path, case, tmp_path):
    bad, expected = BAD[case](path)
    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(path), str(out), parameters=bad, cwd=str(path.parent), kernel_name="python3", progress_bar=False)
    assert info.value.ename == "ParameterError"
    assert expected in info.value.evalue
    executed = nbformat.read(out, as_version=4)
    failed = [i for i, c in enumerate(executed.cells) if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    check = next(i for i, c in enumerate(executed.cells) if "P.resolve(" in c.source)
    assert failed == [check]


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_at_quick_scale(path, tmp_path, monkeypatch):
    monkeypatch.setenv("FBSGD_SCALE", "quick")
    out = tmp_path / path.name
    pm.execute_notebook(str(path), str(out), parameters={"output_dir": str(tmp_path / "results")},
                        cwd=str(path.parent), kernel_name="python3", progress_bar=False)
    executed = nbformat.read(out, as_version=4)
    texts = [o.get("data", {}).get("text/plain", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any(t.startswith(("✔", "✘", "◐")) for t in texts), "every chapter ends in computed verdicts"
    assert list((tmp_path / "results").glob("*.csv")), "every chapter writes its tables to output_dir"
