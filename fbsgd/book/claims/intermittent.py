"""Claims of the chapter on intermittent forward perturbations (Section 7.2.3, Figures 7-8)."""
from fbsgd.book.verdicts import Claim

_C = "intermittent"
_FIGS = {"fig7": ("Figure 7", "non-convex case"), "fig8": ("Figure 8", "PL case (ρ‖w‖²)")}


def _claims(prefix):
    fig, case = _FIGS[prefix]
    ref = f"Section 7.2.3, {fig}"
    where = dict(section="Section 7", decided_by=f"fig-intermittent-{prefix[3]}")
    return [
        Claim(id=f"{_C}.{prefix}_small_interval_plateau", chapter=_C, ref=ref, source="paper", **where,
              text=f"{case[0].upper() + case[1:]}: at the smallest interval Δt the perturbations behave like frequent forward "
                   f"noise: the stable gradient norm levels off as γ → 0"),
        Claim(id=f"{_C}.{prefix}_plateau_falls", chapter=_C, ref=ref, source="paper", **where,
              text=f"{case[0].upper() + case[1:]}: the plateau falls as the interval Δt grows"),
        Claim(id=f"{_C}.{prefix}_recovers", chapter=_C, ref=ref, source="paper", **where,
              text=f"{case[0].upper() + case[1:]}: with rare enough perturbations the curve recovers the error-free behaviour"),
        Claim(id=f"{_C}.{prefix}_stronger_needs_larger", chapter=_C, ref=ref, source="paper", **where,
              text=f"{case[0].upper() + case[1:]}: a larger σ_f needs a larger interval Δt to recover"),
    ]


CLAIMS = _claims("fig7") + _claims("fig8")
