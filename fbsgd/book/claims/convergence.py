"""The claims the chapter 'convergence' (Section 5) judges, each with the threshold its verdict
applies (the verdict functions, in :mod:`fbsgd.studies.convergence.study`, state them in their rules)."""
from fbsgd.book.verdicts import Claim

_C = "convergence"
_FIG = "fig-convergence-rates"
_RATE = ("fitted exponent within ±0.05 (the chapter's exponent tolerance) of {target}; outside that band, "
         "unresolved while the 95 % interval still reaches it, does not hold once it does not")
_BOUND = "bound / measured ≥ 1 at every {cases} (mean over seeds)"
_TIGHT = "largest / smallest bound-to-measured ratio over the horizons ≤ 2"

CLAIMS = [
    Claim(id=f"{_C}.remark1", chapter=_C, ref="Section 5, Remark 1, eq. (34)", source="paper",
          text="Standard SGD with γ = c/√T converges at the rate T⁻¹ᐟ² on the non-convex problem",
          section="Section 5", decided_by=_FIG, threshold=_RATE.format(target="−0.5")),
    Claim(id=f"{_C}.remark2", chapter=_C, ref="Section 5, Remark 2, eq. (38)", source="paper",
          text="Standard SGD with γ = c·ln T/T converges at the rate ln T/T ≈ T⁻¹ under the PL condition",
          section="Section 5", decided_by=_FIG,
          threshold=_RATE.format(target="the log–log slope of ln T/T on the horizons run")),
    Claim(id=f"{_C}.bound34", chapter=_C, ref="Section 5, Theorem 3, eq. (34)", source="paper",
          text="The right-hand side of (34), with the estimated constants and exact error moments, bounds the "
               "average squared gradient norm at every horizon and for every setting",
          section="Section 5", decided_by=_FIG, threshold=_BOUND.format(cases="(setting, T)")),
    Claim(id=f"{_C}.bound38", chapter=_C, ref="Section 5, Theorem 5, eq. (38)", source="paper",
          text="The right-hand side of (38), with the estimated constants and exact error moments, bounds the "
               "final loss gap at every horizon and for every setting",
          section="Section 5", decided_by=_FIG, threshold=_BOUND.format(cases="(setting, T)")),
    Claim(id=f"{_C}.tight34", chapter=_C, ref="Section 5, eq. (34)", source="book",
          text="Without perturbations, (34) is tight up to a constant factor that does not depend on T",
          section="Section 5", decided_by=_FIG, threshold=_TIGHT),
    Claim(id=f"{_C}.tight38", chapter=_C, ref="Section 5, eq. (38)", source="book",
          text="Without perturbations, (38) is tight up to a constant factor that does not depend on T",
          section="Section 5", decided_by=_FIG, threshold=_TIGHT),
    Claim(id=f"{_C}.bound37", chapter=_C, ref="Section 5, Theorems 4–5, eqs. (37), (38) with (13)/(23)", source="paper",
          text="With the depth constants of Assumption 3, the bound (37) (and (38) with (13)/(23) substituted) "
               "still bounds the perturbed runs",
          section="Section 5", decided_by="the-right-hand-sides", threshold=_BOUND.format(cases="perturbed (setting, T)")),
]
