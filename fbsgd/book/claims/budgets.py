"""The claims the chapter 'budgets' (Section 6, Table 1, Figure 2) judges."""
from fbsgd.book.verdicts import Claim

_C = "budgets"
_NAME = {"nonconvex": "non-convex", "pl": "PL"}
_CAP = {"nonconvex": "Non-convex", "pl": "PL"}  # at the start of a claim
_EQ = {"nonconvex": "(43)", "pl": "(44)"}
_A = {("nonconvex", "forward", "zero"): "O(T¹ᐟ²)", ("nonconvex", "backward", "zero"): "O(T)",
      ("nonconvex", "forward", "nonzero"): "O(T¹ᐟ²)", ("nonconvex", "backward", "nonzero"): "O(T¹ᐟ²)",
      ("pl", "forward", "zero"): "O(1)", ("pl", "backward", "zero"): "O(T)",
      ("pl", "forward", "nonzero"): "O(1)", ("pl", "backward", "nonzero"): "O(1)"}

_COR1, _TABLE1, _SPIKES = "fig-budgets-cor1", "fig-budgets-table1", "fig-budgets-spikes"
_LEVELS = "gradient-spikes-results"  # the section whose table of end levels decides (the heading's id)
_S6 = dict(section="Section 6")

CLAIMS = []
for _g in ("nonconvex", "pl"):
    _n, _e = _CAP[_g], _EQ[_g]
    CLAIMS += [
        Claim(id=f"{_C}.cor1_{_g}_forward_allowed", chapter=_C, ref=f"Section 6.1, Corollary 1, eq. {_e}", source="paper",
              text=f"{_n}: zero-mean forward perturbations at every iteration whose size shrinks as {_e} allows keep the rate",
              decided_by=_COR1, **_S6),
        Claim(id=f"{_C}.cor1_{_g}_biased_allowed", chapter=_C, ref=f"Section 6.1, Corollary 1, eq. {_e}", source="paper",
              text=f"{_n}: biased backward perturbations at every iteration whose mean shrinks as {_e} allows keep the rate",
              decided_by=_COR1, **_S6),
        Claim(id=f"{_C}.cor1_{_g}_backward_constant", chapter=_C, ref="Section 6.1, Corollary 1, Remark 3", source="paper",
              text=f"{_n}: zero-mean backward perturbations of constant size O(1) at every iteration keep the rate",
              decided_by=_COR1, **_S6),
        Claim(id=f"{_C}.cor1_{_g}_forward_constant", chapter=_C, ref="Section 6.1, Remark 3", source="paper",
              text=f"{_n}: zero-mean forward perturbations of constant size O(1) at every iteration lose the rate",
              decided_by=_COR1, **_S6),
    ]
for (_g, _p, _m), _b in _A.items():
    CLAIMS.append(Claim(id=f"{_C}.table1_{_g}_{_p}_{_m}", chapter=_C, ref="Section 6.2, Table 1, Corollaries 2–4",
                        source="paper", text=f"Table 1, {_NAME[_g]}, {'zero-mean' if _m == 'zero' else 'biased'} {_p} "
                                             f"perturbations: a budget Q = {_b} keeps the rate",
                        decided_by=_TABLE1, **_S6))
CLAIMS.append(Claim(id=f"{_C}.table1_conservative", chapter=_C, ref="Section 6.2, Table 1", source="book",
                    text="Where Table 1's budget is below T, larger budgets than the table's also keep the rate here",
                    decided_by=_TABLE1, **_S6))
for _g in ("nonconvex", "pl"):
    CLAIMS += [
        Claim(id=f"{_C}.remark5_{_g}", chapter=_C, ref="Section 6.2, Table 1, Remark 5", source="paper",
              text=f"{_CAP[_g]}: with zero-mean perturbations the backward pass tolerates more occurrences than the forward pass",
              decided_by=_TABLE1, **_S6),
        Claim(id=f"{_C}.corollary4_{_g}", chapter=_C, ref="Section 6.2, Table 1, Corollary 4", source="paper",
              text=f"{_CAP[_g]}: without the zero-mean property forward and backward perturbations have the same budget",
              decided_by=_TABLE1, **_S6),
    ]
CLAIMS += [
    Claim(id=f"{_C}.figure2_spike_recovers", chapter=_C, ref="Section 6.3, Figure 2", source="paper",
          text="After one large spike (Q = 1, allowed by every row of Table 1) training returns to where standard SGD is",
          decided_by=_SPIKES, **_S6),
    Claim(id=f"{_C}.figure2_disturbance_off_course", chapter=_C, ref="Section 6.3, Figure 2, Corollary 4", source="paper",
          text="A more moderate but persistent biased disturbance (Q ≈ T, beyond Corollary 4's budget T¹ᐟ²) "
               "keeps training off course", decided_by=_SPIKES, **_S6),
    Claim(id=f"{_C}.figure2_spike_above_disturbance", chapter=_C, ref="Section 6.3, Figure 2", source="book",
          text="The isolated spike's peak is larger than the persistent disturbance's level (the set-up of Figure 2)",
          decided_by=_SPIKES, **_S6),
    Claim(id=f"{_C}.biased_level_no_shrink", chapter=_C, ref="Section 6.1, Corollary 1 (‖Eε‖ condition)", source="book",
          text="The level of the persistent biased disturbance does not shrink with the step size (a bias)",
          decided_by=_LEVELS, **_S6),
    Claim(id=f"{_C}.zero_backward_shrinks", chapter=_C, ref="Section 6.2, Corollary 2 (Q_ε ≲ T)", source="book",
          text="The level of the persistent zero-mean backward disturbance shrinks with the step size (noise only)",
          decided_by=_LEVELS, **_S6),
    Claim(id=f"{_C}.zero_forward_no_shrink", chapter=_C, ref="Section 6.2, Corollary 2 (Q_δ ≲ T¹ᐟ²)", source="book",
          text="The level of the persistent zero-mean forward disturbance does not shrink with the step size "
               "(a bias after the nonlinearity)", decided_by=_LEVELS, **_S6),
    Claim(id=f"{_C}.section53_weaker_on_delta", chapter=_C, ref="Section 5.3 (structural asymmetry)", source="paper",
          text="Section 6 permits much weaker constraints on the forward perturbations δ than on the backward "
               "perturbations ε", section="Section 5", decided_by=_COR1),
]
