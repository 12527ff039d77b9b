"""How tables are printed for the reader (the CSV keeps the raw values)."""
import numpy as np
import pandas as pd
import pytest

from fbsgd.book import report as R


@pytest.mark.parametrize("x, text", [
    (0.000123456, "0.000123"), (-0.4966, "−0.497"), (123456.78, "123,457"), (2.5e8, "2.5e+08"),
    (3, "3"), (200_000, "200,000"), (np.int64(-7), "−7"), (float("nan"), "—"), (None, "—"),
    (float("inf"), "∞"), (-np.inf, "−∞"), (True, "yes"), (np.bool_(False), "no"), ("tanh", "tanh"), (2.0, "2"),
])
def test_number(x, text):
    assert R.number(x) == text


def test_header_uses_symbols_then_spaces():
    assert R.header("gamma") == "γ" and R.header("sigma_f") == "σ_f" and R.header("closed_form") == "closed form"


def test_show_selects_renames_formats_and_captions():
    df = pd.DataFrame({"gamma": [0.1, 0.3], "slope": [0.41234, np.nan], "n": [10, 20], "extra": ["a", "b"]})
    html = R.show(df, "A caption", columns=["gamma", "slope", "n"], rename={"n": "runs"}).to_html()
    assert "A caption" in html and "γ" in html and "runs" in html and "extra" not in html
    assert "0.412" in html and "—" in html and "0.41234" not in html
    assert 'class="fbsgd-table"' in html


def test_show_names_a_missing_column():
    with pytest.raises(KeyError, match="no column"):
        R.show(pd.DataFrame({"a": [1]}), "c", columns=["b"])


def test_parameter_table_is_folded_and_prints_computed_floats_short():
    html = R.parameter_table({"c_pl": 8.290548002318811, "gammas": [0.1, 0.3], "T": 200_000})._repr_html_()
    assert html.startswith("<details><summary>Parameters used (3)</summary>")
    assert "8.29055" in html and "8.290548002318811" not in html and "[0.1, 0.3]" in html
    assert not R.parameter_table({"a": 1}, collapsed=False)._repr_html_().startswith("<details>")
