"""Claims judged in chapters/error_propagation.ipynb (Section 4: Lemmas 1–2, Theorems 1–2)."""
from fbsgd.book.verdicts import Claim


# claim name -> (the part of the paper it belongs to, the figure or section on the page that decides it)
_WHERE = {"closed_form": ("Section 4", "fig-ep-depth"),
          "depth_growth": ("Section 4", "fig-ep-depth"),
          "bound_outgrows": ("Section 4", "sec-ep-depth"),
          "location_hierarchy": ("Section 5", "fig-ep-location"),
          "forward_bias": ("Section 4", "fig-ep-bias"),
          "forward_bias_order": ("Section 4", "fig-ep-bias"),
          "backward_no_bias": ("Section 4", "fig-ep-bias"),
          "linear_no_bias": ("Section 4", "fig-ep-bias"),
          "nonzero_mean_order": ("Section 4", "fig-ep-bias"),
          "theorem1_printed": ("Section 4", "fig-ep-tightness"),
          "theorem1_derived": ("Section 4", "fig-ep-tightness"),
          "theorem2_printed": ("Section 4", "fig-ep-tightness-bias"),
          "theorem2_derived": ("Section 4", "fig-ep-tightness-bias"),
          "bounds_loose": ("Section 4", "fig-ep-tightness")}


def _c(name, ref, source, text):
    section, decided_by = _WHERE[name]
    return Claim(id=f"error_propagation.{name}", chapter="error_propagation", ref=ref, source=source, text=text,
                 section=section, decided_by=decided_by)


CLAIMS = [
    _c("closed_form", "Section 4 (measurement)", "book",
       "The Monte Carlo estimator reproduces the closed forms of the linear chains"),
    _c("depth_growth", "Section 4, contribution C1", "paper",
       "A perturbation at the first operator causes a gradient error that grows geometrically with depth"),
    _c("bound_outgrows", "Theorem 1, eqs. (13), (21)", "book",
       "The bound (13) grows with depth at least as fast as the measured error"),
    _c("location_hierarchy", "Section 5.3", "paper",
       "Opposite location hierarchies: δ₁ hurts more than δ_(N−1), and ε_N hurts more than ε₂"),
    _c("forward_bias", "Section 1.4; Lemma 2, Theorem 2", "paper",
       "Zero-mean forward perturbations bias the gradient through a nonlinearity"),
    _c("forward_bias_order", "Lemma 2, Theorem 2 (the E‖δ‖⁴ term)", "book",
       "For small σ the squared bias from zero-mean forward noise is of order σ⁴, the order of the bound's E‖δ‖⁴ term"),
    _c("backward_no_bias", "Theorem 2, eq. (23); Section 5.3", "paper",
       "Zero-mean backward perturbations create no bias, because the backward pass is linear in the intermediate gradient"),
    _c("linear_no_bias", "Theorem 2, eq. (23)", "book",
       "On a linear chain with a linear readout, zero-mean forward perturbations create no bias"),
    _c("nonzero_mean_order", "Theorem 2, eq. (23) (the ‖Eδ‖² and ‖Eε‖² terms)", "book",
       "A non-zero mean biases the gradient at first order: squared bias of order σ²"),
    _c("theorem1_printed", "Theorem 1, eqs. (13), (21)", "paper",
       "Theorem 1 with the printed constants (21) bounds the measured mean-square error in every case"),
    _c("theorem1_derived", "Theorem 1, eq. (19)", "book",
       "Theorem 1 with the constant its proof derives (factor 2 in C^e for ε) bounds the measured mean-square error in every case"),
    _c("theorem2_printed", "Theorem 2, eqs. (23), (33)", "paper",
       "Theorem 2 with the printed constants (33) bounds the measured squared bias in every case"),
    _c("theorem2_derived", "Theorem 2, eq. (32)", "book",
       "Theorem 2 with the constant its proof derives ((C_∇²f)² in (33a)) bounds the measured squared bias in every case"),
    _c("bounds_loose", "Theorems 1–2", "book",
       "The bounds are loose, and their looseness grows with depth"),
]
