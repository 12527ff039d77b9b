"""Small helpers the chapters share: verdict lines, tables, downloads."""
from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from fbsgd.engine.storage import atomic_write_bytes

__all__ = ["save_table", "download_link", "publish", "verdict", "parameter_table",
           "header", "number", "show"]


def save_table(df: pd.DataFrame, output_dir: str | os.PathLike, name: str) -> Path:
    """Write ``df`` as ``<output_dir>/<name>.csv`` atomically; return the path."""
    return atomic_write_bytes(Path(output_dir) / f"{name}.csv", df.to_csv(index=False).encode())


def publish(df: pd.DataFrame, output_dir: str | os.PathLike, name: str, label: str | None = None):
    """Write ``df`` to ``<output_dir>/<name>.csv`` and return the link that downloads it from the
    page: the one call a chapter makes per table (``display(publish(table, output_dir, "x"))``)."""
    save_table(df, output_dir, name)
    return download_link(df, f"{name}.csv", label)


class _HTML:
    def __init__(self, html_text: str, text: str):
        self._html, self._text = html_text, text

    def _repr_html_(self):
        return self._html

    def __repr__(self):
        return self._text


def download_link(df: pd.DataFrame, filename: str, label: str | None = None):
    """A link that downloads ``df`` as CSV from the page itself (no server needed)."""
    payload = base64.b64encode(df.to_csv(index=False).encode()).decode()
    label = label or f"Download {filename} ({len(df)} rows)"
    link = f'<a download="{html.escape(filename)}" href="data:text/csv;base64,{payload}">⬇ {html.escape(label)}</a>'
    return _HTML(link, f"[{label}]")


_BADGES = {True: ("✔", "holds", "#1a7f37"), False: ("✘", "does not hold", "#cf222e"), None: ("◐", "holds in part", "#9a6700")}


def verdict(claim: str, holds: bool | None, evidence: str):
    """A one-line verdict: the claim, whether it holds here, and the numbers."""
    mark, word, colour = _BADGES[holds]
    text = f"{mark} {claim} — {word} here: {evidence}"
    block = (
        f'<div style="border-left:4px solid {colour};padding:0.3em 0.8em;margin:0.5em 0">'
        f'<b style="color:{colour}">{mark} Verdict: {html.escape(word)}.</b> '
        f"<i>{html.escape(claim)}</i><br>{html.escape(evidence)}</div>"
    )
    return _HTML(block, text)


def _value(v) -> str:
    """A parameter's value as the table prints it: floats to 6 significant figures, the rest as repr."""
    if isinstance(v, float):
        return f"{v:.6g}"
    return repr(v)


def parameter_table(resolved: dict, collapsed: bool = True):
    """The parameters this run used, as a small table, folded under "Parameters used (n)"
    (``collapsed=False``: the bare table)."""
    rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td><code>{html.escape(_value(v))}</code></td></tr>"
                   for k, v in resolved.items())
    text = ", ".join(f"{k}={v!r}" for k, v in resolved.items())
    table = f'<table class="fbsgd-params"><tr><th>parameter</th><th>value used</th></tr>{rows}</table>'
    if collapsed:
        table = f"<details><summary>Parameters used ({len(resolved)})</summary>{table}</details>"
    return _HTML(table, text)


# ---------------------------------------------------------------------------
# tables as a reader sees them: the CSV keeps the raw columns, the page shows these
# ---------------------------------------------------------------------------

SYMBOLS = {
    "gamma": "γ", "lr": "γ", "sigma_f": "σ_f", "sigma_b": "σ_b", "sigma": "σ", "sigma2": "σ²", "rho": "ρ",
    "mu": "μ", "beta": "β", "eta": "η", "delta0": "Δ₀", "Q_delta": "Q_δ", "Q_eps": "Q_ε", "k0": "k₀",
    "interval": "Δt", "w_star_norm": "‖w*‖",
}
MINUS = "\u2212"


def header(name: str) -> str:
    """The printed name of a column: its symbol if it has one (``gamma`` → γ), else with spaces."""
    return SYMBOLS.get(str(name), str(name).replace("_", " "))


def number(x, digits: int = 3) -> str:
    """A number as the book prints it: ``digits`` significant figures, integers and numbers
    below a million that have more digits than that in full, with thousands separators, a true minus sign, "—" for a missing value and "∞" for an infinite one."""
    if x is None or isinstance(x, str):
        return "—" if x is None else x
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        text = f"{int(x):,}"
    else:
        x = float(x)
        if math.isnan(x):
            return "—"
        if math.isinf(x):
            return "∞" if x > 0 else MINUS + "∞"
        whole = x.is_integer() or 10 ** digits <= abs(x)  # 123,457 rather than 1.23e+05
        text = f"{x:,.0f}" if whole and abs(x) < 1e6 else f"{x:.{digits}g}"
    return text.replace("-", MINUS)


def show(df: pd.DataFrame, caption: str, columns=None, rename: dict | None = None, digits: int = 3,
         formats: dict | None = None):
    """The table a chapter displays: the chosen ``columns`` in order (default all), printed
    headers (:func:`header`, or ``rename``), numbers by :func:`number` (or a per-column
    callable or format string in ``formats``), no index, and a caption.  The full table
    belongs in the CSV (:func:`publish`)."""
    columns = list(df.columns if columns is None else columns)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"show: no column(s) {missing} in the table; it has {list(df.columns)}")
    names = {c: (rename or {}).get(c, header(c)) for c in columns}
    table = df[columns].rename(columns=names)
    fmt = {}
    for c in columns:
        f = (formats or {}).get(c)
        fmt[names[c]] = f if f is not None else (lambda x, d=digits: number(x, d))
    return table.style.hide(axis="index").format(fmt).set_caption(caption).set_table_attributes('class="fbsgd-table"')
