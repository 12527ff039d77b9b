"""Claims of the chapter on frequent zero-mean perturbations (Section 7.2.1, Figures 3-5)."""
from fbsgd.book.verdicts import Claim

_C = "frequent_zero_mean"


def _claim(name, ref, text, source="paper"):
    return Claim(id=f"{_C}.{name}", chapter=_C, ref=ref, source=source, text=text, section="Section 7",
                 decided_by=f"fig-frequent-{name[3]}")  # fig3_… → Figure 3's figure, fig4_… → Figure 4's, …


CLAIMS = [
    _claim("fig3_step_size_gain", "Section 7.2.1, Figure 3",
           "Under frequent zero-mean forward perturbations a smaller step size brings little improvement of the "
           "stable gradient norm; under backward ones it does"),
    _claim("fig4_backward_decreases", "Section 7.2.1, Figure 4 (right)",
           "Non-convex case: with zero-mean backward perturbations the stable gradient norm keeps decreasing towards 0 "
           "as γ → 0, for every σ_b"),
    _claim("fig4_forward_plateau", "Section 7.2.1, Figure 4 (left); Remarks 3–4",
           "Non-convex case: zero-mean forward perturbations with σ_f ≥ 0.5 pin the stable gradient norm at a "
           "non-zero floor as γ → 0"),
    _claim("fig5_backward_decreases", "Section 7.2.1, Figure 5 (right)",
           "PL case (ρ‖w‖²): with zero-mean backward perturbations the stable gradient norm keeps decreasing towards 0 "
           "as γ → 0, for every σ_b"),
    _claim("fig5_forward_plateau", "Section 7.2.1, Figure 5 (left); Remarks 3–4",
           "PL case (ρ‖w‖²): zero-mean forward perturbations with σ_f ≥ 0.5 pin the stable gradient norm at a "
           "non-zero floor as γ → 0"),
]
