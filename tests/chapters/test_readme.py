"""The README's code runs as written: the example of a user's own perturbation."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.slow
def test_the_own_perturbation_example_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", _section("Your own perturbation"), re.S)
    assert len(blocks) == 2
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks).replace("T=20_000", "T=2_000"))
    env = {**os.environ, "FBSGD_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Round(format='bfloat16', mode='stochastic')" in out.stdout
    assert "relative_size" in out.stdout


@pytest.mark.slow
def test_the_api_pages_worked_example_runs(tmp_path):
    """The example that opens the API reference (chapters/api.md) runs as printed."""
    api = README.parent / "chapters" / "api.md"
    blocks = re.findall(r"```python\n(.*?)```", api.read_text(), re.S)
    assert len(blocks) == 1
    script = tmp_path / "api_example.py"
    script.write_text(blocks[0].replace("T=20_000", "T=2_000") + "\nprint(run.diverged, len(table))\n")
    env = {**os.environ, "FBSGD_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("False 2"), out.stdout[-500:]
