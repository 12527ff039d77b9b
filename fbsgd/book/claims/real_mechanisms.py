"""Claims judged in chapters/real_mechanisms.ipynb.  The paper models δ and ε abstractly; every claim
about a concrete mechanism is the book's own probe of how that model applies."""
from fbsgd.book.verdicts import Claim

_C = "real_mechanisms"


# the part of the paper each claim belongs to, and the figure or section of the chapter's page that decides it
_WHERE = {
    "nearest_zero_mean": ("Section 6", "what-each-mechanism-does-to-and"),
    "stochastic_zero_mean": ("Section 6", "what-each-mechanism-does-to-and"),
    "randk_zero_mean": ("Section 6", "what-each-mechanism-does-to-and"),
    "topk_biased": ("Section 4", "what-each-mechanism-does-to-and"),
    "exponent_flips_bounded": ("Section 4", "what-each-mechanism-does-to-and"),
    "fig4_backward_no_floor": ("Section 7", "fig-real-mechanisms-4"),
    "fig4_forward_prediction": ("Section 7", "fig-real-mechanisms-4"),
    "fig4_asymmetry": ("Section 7", "fig-real-mechanisms-4"),
    "fig4_bfloat16_negligible": ("Section 7", "fig-real-mechanisms-4"),
    "depth_compounds": ("Section 4", "fig-real-mechanisms-depth"),
    "depth_forward_sensitive": ("Section 4", "fig-real-mechanisms-depth"),
    "optimizers_asymmetry": ("Beyond the paper", "momentum-and-adam"),
    "optimizers_floor_heavyball": ("Beyond the paper", "momentum-and-adam"),
    "optimizers_floor_adam": ("Beyond the paper", "momentum-and-adam"),
    "atlas_table1_boundary": ("Section 6", "fig-real-mechanisms-atlas"),
    "atlas_forward_fragile": ("Section 6", "fig-real-mechanisms-atlas"),
}


def _c(name, ref, source, text):
    section, decided_by = _WHERE[name]
    return Claim(id=f"{_C}.{name}", chapter=_C, ref=ref, source=source, text=text, section=section,
                 decided_by=decided_by)


CLAIMS = [
    _c("nearest_zero_mean", "Section 6.1, Remark 3 and Section 6.2, Corollaries 2–3 (zero-mean perturbations)", "book",
       "Rounding to nearest meets the zero-mean model: E[δ | x] = 0 on the logistic chain's messages"),
    _c("stochastic_zero_mean", "Section 6.1, Remark 3 and Section 6.2, Corollaries 2–3 (zero-mean perturbations)", "book",
       "Stochastic rounding meets the zero-mean model: E[δ | x] = 0 on the logistic chain's messages"),
    _c("randk_zero_mean", "Section 6.1, Remark 3 and Section 6.2, Corollaries 2–3 (zero-mean perturbations)", "book",
       "Rand-K compression of the message across the batch is zero-mean given the input"),
    _c("topk_biased", "Section 4, Theorem 2 and Section 6.1, Corollary 1 (conditional bias terms)", "book",
       "Top-K compression of the message across the batch is not zero-mean given the input"),
    _c("exponent_flips_bounded", "Section 4, Theorems 1–2 (moments of δ and ε); Section 6.2 (bit flips)", "book",
       "Exponent bit flips stay bounded by the message's own range (finite, no spikes)"),
    _c("fig4_backward_no_floor", "Section 7.2.1, Figure 4 (right)", "book",
       "Backward mechanisms that are zero-mean given the input leave no floor as γ → 0"),
    _c("fig4_forward_prediction", "Section 7.2.1, Figure 4; Section 4, Theorem 2 (the conditional bias); Remarks 3–4", "book",
       "The γ → 0 prediction from a mechanism's conditional law given its input gives its floor (or its absence), "
       "for every format and mode, in the forward and in the backward pass"),
    _c("fig4_asymmetry", "Section 7.2.1, the forward/backward asymmetry", "book",
       "For each rounding format and mode, forward rounding hurts more than backward rounding"),
    _c("fig4_bfloat16_negligible", "Section 7.2.1, Figure 4", "book",
       "bfloat16 rounding of either message leaves the stable gradient norm at standard SGD's level at every step size"),
    _c("depth_compounds", "Section 4, Theorem 1 and eq. (21)", "book",
       "In training, the gradient error of a mechanism at every layer compounds with depth (grows faster than the number of layers)"),
    _c("depth_forward_sensitive", "Section 4, Theorem 1; Section 5.3 (forward/backward asymmetry); Remark 3", "book",
       "In a deep tanh chain the forward pass is the sensitive one: the relative gradient error is larger forward than backward"),
    _c("optimizers_asymmetry", "beyond the paper (Remark 3's asymmetry; the paper uses momentum only in Appendix A.3's Top-1 example, Adam nowhere)", "book",
       "The forward/backward asymmetry survives heavy-ball momentum and Adam"),
    _c("optimizers_floor_heavyball", "beyond the paper (momentum appears only in Appendix A.3's Top-1 example)", "book",
       "Heavy-ball momentum leaves a mechanism's floor in the deep chain (stable norm over the clean run's) where plain SGD has it"),
    _c("optimizers_floor_adam", "beyond the paper (Adam)", "book",
       "Adam leaves a mechanism's floor in the deep chain (stable norm over the clean run's) where plain SGD has it"),
    _c("atlas_table1_boundary", "Section 6.2, Table 1", "book",
       "Exponent bit flips with expected budget Q ≤ T^a (Table 1, a biased perturbation) leave SGD recovered"),
    _c("atlas_forward_fragile", "Section 6.2, Table 1 (forward vs backward)", "book",
       "Exponent bit flips break SGD at lower rates in the forward pass than in the backward pass"),
]
