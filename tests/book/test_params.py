import pytest

from fbsgd.book import params as P

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


# -- lists given as strings (papermill -p passes "[0.9, 1.1]" as a string) ----------------------


@pytest.mark.parametrize("text,expected", [
    ("[0.9, 1.1]", [0.9, 1.1]),
    (" [1, 2e-1] ", [1.0, 0.2]),
    ("(0.5,)", [0.5]),
    ("0.9, 1.1", [0.9, 1.1]),  # a tuple, as in Python
])
def test_list_parameter_accepts_the_string_of_a_list(text, expected):
    assert P.resolve(ns(gammas=text), **SPEC)["gammas"] == expected
    assert P.resolve(ns(gammas=expected), **SPEC)["gammas"] == expected  # -y / a real list still works


def test_int_and_str_lists_accept_strings_and_check_items():
    assert P.resolve(ns(seeds="[3, 4]"), **SPEC)["seeds"] == [3, 4]
    spec = dict(kinds=P.StrList(paper=["a"], choices=("a", "b")))
    assert P.resolve({"kinds": "['b', 'a']", "scale": None}, **spec)["kinds"] == ["b", "a"]


@pytest.mark.parametrize("text", [
    "[0.9, 1.1", "0.9", "[0.9, 'x']", "[]", "{'a': 1}", "[-1.0]", "__import__('os')", "[0.9, 1.1] + [2]", "gammas",
])
def test_list_parameter_refuses_any_other_string(text):
    with pytest.raises(P.ParameterError) as info:
        P.resolve(ns(gammas=text), **SPEC)
    msg = str(info.value)
    assert f"parameter 'gammas' must be a list of at least 1 numbers each >= 0.0, got {text!r}" in msg
    assert '-p gammas "[x, y]"' in msg and "-y" in msg


# -- any data global is a parameter candidate (dicts included) -----------------------------------


@pytest.mark.parametrize("value", [{"a": 1}, {1, 2}, object(), b"x", 1j])
def test_unknown_names_with_any_data_value_are_reported(value):
    with pytest.raises(P.ParameterError, match=r"unknown parameter 'TT' \(did you mean 'T'\?\)"):
        P.resolve(ns(TT=value), **SPEC)


def test_modules_classes_functions_and_ipython_names_are_not_parameters():
    g = ns(np=__import__("numpy"), Path=__import__("pathlib").Path, display=print, f=lambda: 0,
           In=[""], Out={}, exit=None, _i="", _oh={}, __builtins__={})
    assert P.resolve(g, **SPEC)["T"] == 200_000


@pytest.mark.parametrize("name,msg", [
    ("T", "parameter 'T' must be an integer >= 1, got {'a': 1}"),
    ("gammas", "parameter 'gammas' must be a list of at least 1 numbers each >= 0.0, got {'a': 1}"),
    ("mode", "parameter 'mode' must be one of ['per_sample', 'shared'], got {'a': 1}"),
    ("show", "parameter 'show' must be True or False, got {'a': 1}"),
])
def test_dict_value_of_a_declared_parameter_is_refused(name, msg):
    with pytest.raises(P.ParameterError) as info:
        P.resolve(ns(**{name: {"a": 1}}), **SPEC)
    assert msg in str(info.value)


# -- writable folders ----------------------------------------------------------------------------


def test_dir_parameter_is_created_and_probed(tmp_path):
    target = tmp_path / "a" / "b"
    out = P.resolve({"out": str(target), "scale": None}, out=P.Dir())
    assert out["out"] == str(target) and target.is_dir() and list(target.iterdir()) == []  # the probe is deleted


def test_dir_parameter_that_is_a_file_or_under_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(P.ParameterError) as info:
        P.resolve({"out": str(f), "scale": None}, out=P.Dir())
    assert f"parameter 'out' must be a writable folder, got {str(f)!r}: it exists and is not a folder" in str(info.value)
    with pytest.raises(P.ParameterError) as info:
        P.resolve({"out": str(f / "sub"), "scale": None}, out=P.Dir())
    assert f"parameter 'out' must be a writable folder, got {str(f / 'sub')!r}: cannot create it (Not a directory" in str(info.value)
    with pytest.raises(P.ParameterError, match="parameter 'out' must be a string, got 5"):
        P.resolve({"out": 5, "scale": None}, out=P.Dir())


# -- rules ---------------------------------------------------------------------------------------

RULE_SPEC = dict(T=P.Int(paper=1000, min=1), metric_every=P.Int(paper=10, min=1), n_jobs=P.Int(paper=-1, min=-64))


def rules():
    return [
        P.rule(lambda n_jobs: n_jobs != 0, "parameter 'n_jobs' must not be 0 (use -1 for all cores, or a positive count), got 0"),
        P.rule(lambda T, metric_every: T >= 2 * metric_every,
               "parameter 'T' must be at least 2 * metric_every, got T={T}, metric_every={metric_every}"),
    ]


def rns(**kw):
    return {"T": None, "metric_every": None, "n_jobs": None, "scale": None, **kw}


def test_rules_pass_and_fail():
    assert P.resolve(rns(), rules=rules(), **RULE_SPEC)["T"] == 1000
    with pytest.raises(P.ParameterError, match=r"parameter 'n_jobs' must not be 0 \(use -1"):
        P.resolve(rns(n_jobs=0), rules=rules(), **RULE_SPEC)
    with pytest.raises(P.ParameterError, match=r"parameter 'T' must be at least 2 \* metric_every, got T=30, metric_every=20"):
        P.resolve(rns(T=30, metric_every=20), rules=rules(), **RULE_SPEC)


def test_every_problem_in_one_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    spec = dict(RULE_SPEC, out=P.Dir(), xs=P.FloatList(paper=[1.0]))
    with pytest.raises(P.ParameterError) as info:
        P.resolve(rns(n_jobs=0, T=30, metric_every=20, out=str(f), xs="[1,", typo={"a": 1}), rules=rules(), **spec)
    msg = str(info.value)
    for part in ("unknown parameter 'typo'", "parameter 'out' must be a writable folder", "parameter 'xs' must be a list",
                 "parameter 'n_jobs' must not be 0", "parameter 'T' must be at least 2 * metric_every"):
        assert part in msg
    assert msg.endswith("This chapter's parameters are: T, metric_every, n_jobs, out, scale, xs.")


def test_rule_is_skipped_when_its_parameter_is_already_wrong():
    with pytest.raises(P.ParameterError) as info:
        P.resolve(rns(T="zero", metric_every=20), rules=rules(), **RULE_SPEC)
    assert "parameter 'T' must be an integer" in str(info.value) and "2 * metric_every" not in str(info.value)


def test_rule_returning_a_problem_and_optional_names():
    seen = {}

    def check(T, spike_T=None, other=None):
        seen.update(T=T, spike_T=spike_T, other=other)
        return f"parameter 'T' is odd: {T}" if T % 2 else None

    spec = dict(RULE_SPEC, spike_T=P.Int(paper=7))
    assert P.resolve(rns(T=4), rules=[P.rule(check)], **spec)
    assert seen == dict(T=4, spike_T=7, other=None)
    with pytest.raises(P.ParameterError, match="parameter 'T' is odd: 5"):
        P.resolve(rns(T=5), rules=[P.rule(check)], **spec)


def test_rule_on_an_undeclared_parameter_is_a_programming_error():
    with pytest.raises(TypeError, match="does not declare"):
        P.resolve(rns(), rules=[P.rule(lambda nope: True, "x")], **RULE_SPEC)


# -- the rules of the chapters that run sweeps (fbsgd.studies.section7.design) -------------------------------


@pytest.fixture
def sweep_rules_env(monkeypatch, tmp_path):
    from fbsgd.studies.section7 import design as X
    from fbsgd.engine import sweeps

    monkeypatch.setattr(sweeps, "machine_memory", lambda: 16 * 2**30)
    monkeypatch.setenv("FBSGD_CACHE_DIR", str(tmp_path / "cache"))
    return X


def s7ns(**kw):
    from fbsgd.studies.section7 import design as X

    chapter = dict(mode="per_sample", ewma=0.99, metric_every=10, precision="float32", data_seed=0, n_jobs=-1, output_dir="results")
    return {name: None for name in X.section7_spec()} | {"scale": "quick"} | chapter | kw


def test_section7_rules_accept_the_defaults(sweep_rules_env, tmp_path, monkeypatch):
    X = sweep_rules_env
    monkeypatch.chdir(tmp_path)
    for finest in (None, 1):
        assert P.resolve(s7ns(), rules=X.section7_rules(finest), **X.section7_spec())["T"] == 5_000
    assert (tmp_path / "cache").is_dir() and (tmp_path / "results").is_dir()


def test_section7_memory_rule_names_T(sweep_rules_env, tmp_path, monkeypatch):
    X = sweep_rules_env
    monkeypatch.chdir(tmp_path)
    with pytest.raises(P.ParameterError) as info:
        P.resolve(s7ns(T=2**31 - 1, n_jobs=1), rules=X.section7_rules(), **X.section7_spec())
    msg = str(info.value)
    assert msg.startswith("parameter 'T' is too large for this machine's memory: a sweep with T = 2,147,483,647, "
                          "metric_every = 10 and 8 configurations per worker x 1 workers needs about 20.8 GiB, "
                          "more than 50% of this machine's 16.0 GiB")
    # the reproducibility notes also run with metric_every = 1: ten times the memory
    with pytest.raises(P.ParameterError, match="metric_every = 1 and"):
        P.resolve(s7ns(T=300_000_000, n_jobs=1), rules=X.section7_rules(1), **X.section7_spec())
    assert P.resolve(s7ns(T=300_000_000, n_jobs=1), rules=X.section7_rules(), **X.section7_spec())


def test_horizon_rules(sweep_rules_env, tmp_path, monkeypatch):
    X = sweep_rules_env
    monkeypatch.chdir(tmp_path)
    spec = dict(T_min=P.Int(paper=1000), T_max=P.Int(paper=10_000), c_nonconvex=P.Float(paper=10.0),
                n_jobs=P.Int(paper=1), spike_T=P.Int(paper=20_000))
    g = {k: None for k in spec} | {"scale": None}
    assert P.resolve(dict(g), rules=X.horizon_rules(), **spec)
    with pytest.raises(P.ParameterError, match="parameter 'T_max' must be larger than 'T_min', got T_min=1000, T_max=500"):
        P.resolve(g | {"T_max": 500}, rules=X.horizon_rules(), **spec)
    with pytest.raises(P.ParameterError, match="parameter 'T_max' is too large for this machine's memory"):
        P.resolve(g | {"T_max": 10**8, "c_nonconvex": 1e6}, rules=X.horizon_rules(), **spec)
    with pytest.raises(P.ParameterError, match="parameter 'spike_T' is too large for this machine's memory"):
        P.resolve(g | {"spike_T": 10**8, "n_jobs": 16}, rules=X.horizon_rules(), **spec)
    with pytest.raises(P.ParameterError, match=r"parameter 'n_jobs' must not be 0"):
        P.resolve(g | {"n_jobs": 0}, rules=X.horizon_rules(), **spec)


def test_unwritable_cache_dir_is_refused(sweep_rules_env, tmp_path, monkeypatch):
    X = sweep_rules_env
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    bad = str(tmp_path / "file" / "sub")
    monkeypatch.setenv("FBSGD_CACHE_DIR", bad)
    with pytest.raises(P.ParameterError) as info:
        P.resolve(s7ns(), rules=X.section7_rules(), **X.section7_spec())
    assert (f"environment variable FBSGD_CACHE_DIR must name a writable folder for the sweep cache, got {bad!r}: "
            f"cannot create it (Not a directory: {bad!r}" in str(info.value))
    monkeypatch.delenv("FBSGD_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "file"))
    with pytest.raises(P.ParameterError, match="set the environment variable FBSGD_CACHE_DIR to a writable folder"):
        P.resolve(s7ns(), rules=X.section7_rules(), **X.section7_spec())


# -- repeated values in lists --------------------------------------------------------------------


@pytest.mark.parametrize("spec,value,repeated", [
    (P.FloatList(paper=[1.0]), [0.1, 0.01, 0.1], "0.1"),
    (P.FloatList(paper=[1.0]), "[0.1, 0.1]", "0.1"),  # as papermill -p passes it
    (P.FloatList(paper=[1.0]), [1, 1.0], "1.0"),  # one number, written twice
    (P.FloatList(paper=[1.0]), [0.0, -0.0], "0.0"),
    (P.IntList(paper=[1]), [2, 3, 2.0, 3, 3], "2, 3"),  # each repeated value named once, in order
    (P.StrList(paper=["a"], choices=("a", "b")), ["b", "a", "b"], "'b'"),
])
def test_a_list_that_repeats_a_value_is_refused(spec, value, repeated):
    with pytest.raises(P.ParameterError) as info:
        P.resolve({"xs": value, "scale": None}, xs=spec)
    assert str(info.value).startswith(
        f"parameter 'xs' must not repeat a value (repeated: {repeated}): each value is one configuration of the chapter, "
        "and a repeated one is run twice and counted twice in its fits, averages and tables.")


def test_many_repeats_are_summarised():
    with pytest.raises(P.ParameterError, match=r"\(repeated: 0, 1, 2, 3, 4 and 3 more\)"):
        P.resolve({"xs": list(range(8)) * 2, "scale": None}, xs=P.IntList(paper=[1]))


def test_distinct_values_and_opt_out_pass():
    assert P.resolve({"xs": [0.1, 0.10000000000000002], "scale": None}, xs=P.FloatList())["xs"] == [0.1, 0.10000000000000002]
    assert P.resolve({"xs": [1.0, 1.0], "scale": None}, xs=P.FloatList(unique=False))["xs"] == [1.0, 1.0]
    assert P.resolve({"xs": None, "scale": None}, xs=P.IntList(paper=[3, 3], unique=False))["xs"] == [3, 3]


def test_values_named_alike_are_refused_when_the_list_has_a_label():
    spec = P.FloatList(paper=[1.0], label="{:g}")
    assert P.resolve({"xs": [1e-5, 1.00001e-5], "scale": None}, xs=spec)["xs"] == [1e-5, 1.00001e-5]  # '1e-05', '1.00001e-05'
    with pytest.raises(P.ParameterError) as info:
        P.resolve({"xs": [1e-5, 1.000001e-5, 2.0, 2.0000001, 2.00000001], "scale": None}, xs=spec)
    assert str(info.value).startswith(
        "parameter 'xs' must not hold two values that the chapter names alike in its tables (1e-05 and 1.000001e-05 are both "
        "named '1e-05'; 2.0 and 2.0000001 and 2.00000001 are all named '2'): their rows would be merged into one.")
    assert P.resolve({"xs": [1e-5, 1.000001e-5], "scale": None}, xs=P.FloatList())  # without a label: distinct numbers


def test_a_rule_on_a_list_with_repeats_is_skipped():
    spec = dict(xs=P.FloatList(paper=[1.0]), T=P.Int(paper=10))
    r = P.rule(lambda xs, T: len(xs) < T, "parameter 'xs' is too long")
    with pytest.raises(P.ParameterError) as info:
        P.resolve({"xs": [0.5] * 20, "T": None, "scale": None}, rules=[r], **spec)
    assert "must not repeat a value" in str(info.value) and "too long" not in str(info.value)
