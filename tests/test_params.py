import pytest

from fbsgd import params as P

SPEC = dict(
    T=P.Int(paper=200_000, quick=3_000, min=1),
    gammas=P.FloatList(paper=[0.1, 0.01], min=0.0),
    mode=P.Str(paper="per_sample", choices=("per_sample", "shared")),
    seeds=P.IntList(paper=[0, 1, 2], quick=[0], min=0),
    show=P.Bool(paper=True),
)


def ns(**kw):
    base = {"T": None, "gammas": None, "mode": None, "seeds": None, "show": None, "scale": None, "np": __import__("numpy")}
    base.update(kw)
    return base


def test_defaults_follow_scale(monkeypatch):
    monkeypatch.delenv("FBSGD_SCALE", raising=False)
    assert P.resolve(ns(), **SPEC)["T"] == 200_000
    monkeypatch.setenv("FBSGD_SCALE", "quick")
    out = P.resolve(ns(), **SPEC)
    assert out["T"] == 3_000 and out["seeds"] == [0] and out["gammas"] == [0.1, 0.01]
    assert P.resolve(ns(scale="paper"), **SPEC)["T"] == 200_000


def test_values_are_written_back():
    g = ns(T=10)
    P.resolve(g, **SPEC)
    assert g["T"] == 10 and g["mode"] == "per_sample"


@pytest.mark.parametrize("kw,msg", [
    (dict(TT=5), "unknown parameter 'TT' (did you mean 'T'?)"),
    (dict(T=-1), "parameter 'T' must be an integer >= 1, got -1"),
    (dict(T=2.5), "parameter 'T' must be an integer >= 1, got 2.5"),
    (dict(T=True), "parameter 'T' must be an integer"),
    (dict(gammas=[0.1, "x"]), "parameter 'gammas' must be a list"),
    (dict(gammas=[]), "parameter 'gammas' must be a list of at least 1"),
    (dict(mode="both"), "parameter 'mode' must be one of ['per_sample', 'shared'], got 'both'"),
    (dict(scale="huge"), "parameter 'scale' must be one of"),
    (dict(show="yes"), "parameter 'show' must be True or False"),
])
def test_bad_parameters_raise_one_clear_error(kw, msg):
    with pytest.raises(P.ParameterError) as info:
        P.resolve(ns(**kw), **SPEC)
    assert msg in str(info.value)
    assert "This chapter's parameters are: T, gammas, mode, scale, seeds, show." in str(info.value)


def test_bad_environment_scale(monkeypatch):
    monkeypatch.setenv("FBSGD_SCALE", "fast")
    with pytest.raises(P.ParameterError, match="FBSGD_SCALE must be one of"):
        P.resolve(ns(), **SPEC)


def test_integral_float_accepted_for_int():
    assert P.resolve(ns(T=2e5), **SPEC)["T"] == 200_000


def test_string_lists_check_every_item():
    spec = dict(kinds=P.StrList(paper=["a", "b"], choices=("a", "b", "c")))
    assert P.resolve({"kinds": None, "scale": None}, **spec)["kinds"] == ["a", "b"]
    assert P.resolve({"kinds": ("c",), "scale": None}, **spec)["kinds"] == ["c"]
    for bad in (["a", "z"], [], "a", [1]):
        with pytest.raises(P.ParameterError, match=r"parameter 'kinds' must be a list of at least 1 values from \['a', 'b', 'c'\]"):
            P.resolve({"kinds": bad, "scale": None}, **spec)
