"""The page of all downloadable tables: every CSV the chapters wrote, with its size and a download link."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
from fbsgd.book.report import download_link

__all__ = ["listing", "html_listing", "size", "EMBED_LIMIT"]

EMBED_LIMIT = 5 * 2**20  # larger tables are offered on their chapter's page only


def listing(results_dir) -> pd.DataFrame:
    """One row per CSV in ``results_dir``: file name, rows, columns, bytes."""
    rows = []
    for path in sorted(Path(results_dir).glob("*.csv")):
        df = pd.read_csv(path)
        rows.append(dict(table=path.name, rows=len(df), columns=df.shape[1], bytes=path.stat().st_size))
    return pd.DataFrame(rows, columns=["table", "rows", "columns", "bytes"])


def size(n_bytes: int) -> str:
    """A file size as the page prints it: bytes below 1 KiB, then KiB, then MiB."""
    if n_bytes < 1024:
        return f"{n_bytes} B"
    if n_bytes < 2**20:
        return f"{n_bytes / 1024:.0f} KiB"
    return f"{n_bytes / 2**20:.1f} MiB"


def html_listing(table: pd.DataFrame, results_dir) -> str:
    """The listing as an HTML table whose names download the CSV (from the page itself)."""

    out = []
    for r in table.itertuples():
        if r.bytes <= EMBED_LIMIT:
            link = download_link(pd.read_csv(Path(results_dir) / r.table), r.table, r.table)._repr_html_()
        else:
            link = f"{html.escape(r.table)} (on its chapter's page)"
        out.append(f"<tr><td>{link}</td><td>{r.rows}</td><td>{r.columns}</td><td>{size(r.bytes)}</td></tr>")
    return ('<table class="fbsgd-tables"><tr><th>table</th><th>rows</th><th>columns</th><th>size</th></tr>'
            + "".join(out) + "</table>")
