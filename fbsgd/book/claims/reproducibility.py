"""Claims of the reproducibility notes (Section 7.1): the book's own probes of its open choices."""
from fbsgd.book.verdicts import Claim

_C = "reproducibility"


def _claim(name, ref, text, source="book"):
    return Claim(id=f"{_C}.{name}", chapter=_C, ref=ref, source=source, text=text)


CLAIMS = [
    _claim("alt_mode", "Section 7.1 (draws of δ and ε); Figures 4 and 6",
           "The verdicts of the Figure 4 and Figure 6 grids are unchanged under the other draw mode "
           "(one draw per sample vs one per iteration)"),
    _claim("alt_w0", "Section 7.1 (initial point); Figure 4",
           "The verdicts of the Figure 4 grid are unchanged when w₀ ~ N(0, I) instead of w₀ = 0"),
    _claim("alt_fig6_l2", "Section 7.2.2, Figure 6 (regularizer)",
           "The verdicts of the Figure 6 grid are unchanged with the strongly convex regularizer ρ‖w‖²"),
    _claim("alt_ewma_fast", "Section 7.1 (EWMA factor); Figures 4 and 6",
           "The verdicts of the Figure 4 and Figure 6 grids are unchanged with the EWMA factor β = 0.9"),
    _claim("alt_ewma_slow", "Section 7.1 (EWMA factor); Figures 4 and 6",
           "The verdicts of the Figure 4 and Figure 6 grids are unchanged with the EWMA factor β = 0.999"),
    _claim("fig6_l2_settles", "Section 7.2.2, Figure 6; fbsgd.theory.small_step_limits",
           "With the strongly convex regularizer the biased runs settle (no escape) at the predicted plateau m‖ā‖"),
    _claim("tol_metric_every", "Section 7.1 (metric)",
           "Evaluating the exact gradient norm every metric_every iterations instead of every iteration keeps the "
           "reported numbers within 2% (stable norm) and one interval + 5% (stable iteration)"),
    _claim("tol_precision", "Section 7.1 (arithmetic)",
           "A float32 perturbed pass instead of float64 keeps the reported numbers within 0.5% (stable norm) "
           "and one interval + 1% (stable iteration)"),
    _claim("tol_metric_in_pass", "Section 7.1 (metric)",
           "Computing the exact gradient norm inside the perturbed pass instead of in a separate float64 pass "
           "changes no verdict of the book"),
    _claim("fig3_sigma_f", "Section 7.2.1, Figure 3 (σ_f of the left panel)",
           "Both printed values of Figure 3's forward size, σ_f = 1.0 (text) and 2.0 (caption), pin the stable "
           "gradient norm at a floor"),
]
