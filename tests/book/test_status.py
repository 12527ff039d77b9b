"""The build-status page's facts."""
from fbsgd.book import status as S


def test_build_info_names_the_code_the_stack_and_the_cpu(monkeypatch):
    monkeypatch.setenv("NUMBA_CPU_NAME", "haswell")
    info = S.build_info("quick")
    assert info["scale"] == "quick" and len(info["sweep engine hash (fbsgd source + numerics stack)"]) == 16
    assert info["CPU (numba compiles for)"].endswith("(haswell)")
    assert {"numpy", "numba", "jupyter-book"} <= set(info)
