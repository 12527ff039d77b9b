"""Small helpers the chapters share: verdict lines, tables, downloads, atomic writes."""
from __future__ import annotations

import base64
import html
import os
import tempfile
from pathlib import Path

import pandas as pd

__all__ = ["atomic_write_bytes", "save_table", "download_link", "publish", "verdict", "parameter_table"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename:
    readers see the old file or the complete new one, never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


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


def parameter_table(resolved: dict):
    """The parameters this run used, as a small table."""
    rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td><code>{html.escape(repr(v))}</code></td></tr>" for k, v in resolved.items())
    text = ", ".join(f"{k}={v!r}" for k, v in resolved.items())
    return _HTML(f'<table class="fbsgd-params"><tr><th>parameter</th><th>value used</th></tr>{rows}</table>', text)
