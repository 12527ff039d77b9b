"""What the build-status page shows: the code, the numerics stack and the machine a build ran on."""
from __future__ import annotations

import datetime as _dt
import html
import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
from fbsgd import __version__
from fbsgd.book.params import current_scale
from fbsgd.engine.sweeps import engine_hash
from fbsgd.book.report import save_table

__all__ = ["build_info", "info_table", "save_info", "PACKAGES", "EXEC_MARKS", "readable_exec_marks"]

PACKAGES = ("numpy", "numba", "llvmlite", "scipy", "pandas", "matplotlib", "joblib", "ml_dtypes",
            "jupyter-book", "myst-nb", "sphinx", "papermill")


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    if out.returncode != 0:
        return "unknown (not a git checkout)"
    return out.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def build_info(scale: str | None = None) -> dict:
    """The facts of this build, as an ordered dict of label → value."""

    root = Path(__file__).resolve().parents[2]
    info = {
        "built (UTC)": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "scale": current_scale(scale),
        "fbsgd version": __version__,
        "sweep engine hash (fbsgd source + numerics stack)": engine_hash(),
        "git commit": _git_commit(root),
        "Python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "CPU (numba compiles for)": cpu(),
    }
    info.update({name: _version(name) for name in PACKAGES})
    return info


def cpu() -> str:
    """The processor's model name and the CPU numba generates code for (``NUMBA_CPU_NAME`` overrides
    it): timings differ between machines, and between code with and without AVX-512."""
    model = platform.processor() or "unknown processor"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import llvmlite.binding as llvm

        target = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
    except Exception:  # llvmlite missing or too old: the model name alone
        return model
    return f"{model} ({target})"


def info_table(info: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(str(v))}</code></td></tr>" for k, v in info.items())
    return f'<table class="fbsgd-status"><tr><th>what</th><th>value</th></tr>{rows}</table>'


# myst-nb's execution table marks a page with ✅ or ❌, emoji that show as an empty box without an emoji
# font; the page rewrites them as text marks (✔ and ✘ are in ordinary text fonts) with words
EXEC_MARKS = {"\u2705": "\u2714 ran", "\u274c": "\u2718 failed"}


def readable_exec_marks() -> str:
    """HTML (a script) that replaces the emoji status marks of the execution table on the page by
    :data:`EXEC_MARKS`, readable without an emoji font."""
    return ("<script>\n(function () {\n"
            f"  var marks = {json.dumps(EXEC_MARKS)};\n"  # ASCII escapes: the page's source holds no emoji
            "  function fix() {\n"
            "    document.querySelectorAll('td, td p').forEach(function (el) {\n"
            "      var t = el.textContent.trim();\n"
            "      if (el.children.length === 0 && marks.hasOwnProperty(t)) { el.textContent = marks[t]; }\n"
            "    });\n"
            "  }\n"
            "  if (document.readyState === 'loading') { document.addEventListener('DOMContentLoaded', fix); } else { fix(); }\n"
            "})();\n</script>")


def save_info(info: dict, output_dir) -> Path:

    return save_table(pd.DataFrame({"what": list(info), "value": [str(v) for v in info.values()]}), output_dir, "build_status")
