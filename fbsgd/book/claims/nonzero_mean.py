"""Claims of the chapter on frequent non-zero-mean backward perturbations (Section 7.2.2, Figure 6)."""
from fbsgd.book.verdicts import Claim

_C = "nonzero_mean"


def _claim(name, ref, text, source="paper", decided_by="fig-nonzero-6"):
    return Claim(id=f"{_C}.{name}", chapter=_C, ref=ref, source=source, text=text, section="Section 7",
                 decided_by=decided_by)


CLAIMS = [
    _claim("plateau_every_sigma_b", "Section 7.2.2, Figure 6",
           "With non-zero-mean backward perturbations the stable gradient norm levels off at a plateau as γ → 0, "
           "for every σ_b > 0"),
    _claim("plateau_grows", "Section 7.2.2, Figure 6; Theorem 2, Corollary 1",
           "The plateau rises with σ_b"),
    _claim("baseline_decreases", "Section 7.2.2, Figure 6",
           "Without perturbation (σ_b = 0) the stable gradient norm decreases towards 0 as γ → 0"),
    _claim("matches_prediction", "Figure 6; fbsgd.theory.small_step_limits", source="book",
           text="The plateau equals the γ → 0 limit of the expected perturbed gradient"),
    _claim("escape", "Figure 6; fbsgd.theory.small_step_limits", source="book",
           decided_by="frequent-non-zero-mean-backward-perturbations-figure-6",  # the table of ‖w_T‖ has no label yet
           text="Where the expected perturbed gradient has no zero (the largest σ_b), the iterates escape: "
                "‖w_T‖ grows with γ"),
]
