"""Claims of the reproducibility notes (Section 7.1): the book's own probes of its open choices."""
from fbsgd.book.verdicts import Claim

_C = "reproducibility"


_ALT = "do-the-conclusions-change-under-the-alternatives"  # the sections whose tables decide (the headings' ids)
_TOL = "tolerances-of-the-speed-choices"
_UNCHANGED = "0 verdicts change outcome"


def _claim(name, ref, text, threshold, decided_by=_ALT, source="book"):
    return Claim(id=f"{_C}.{name}", chapter=_C, ref=ref, source=source, text=text, section="Section 7",
                 decided_by=decided_by, threshold=threshold)


CLAIMS = [
    _claim("alt_mode", "Section 7.1 (draws of δ and ε); Figures 4 and 6",
           "The verdicts of the Figure 4 and Figure 6 grids are unchanged under the other draw mode "
           "(one draw per sample vs one per iteration)", _UNCHANGED),
    _claim("alt_w0", "Section 7.1 (initial point); Figure 4",
           "The verdicts of the Figure 4 grid are unchanged when w₀ ~ N(0, I) instead of w₀ = 0", _UNCHANGED),
    _claim("alt_fig6_l2", "Section 7.2.2, Figure 6 (regularizer)",
           "The verdicts of the Figure 6 grid are unchanged with the strongly convex regularizer ρ‖w‖²", _UNCHANGED),
    _claim("alt_ewma_fast", "Section 7.1 (EWMA factor); Figures 4 and 6",
           "The verdicts of the Figure 4 and Figure 6 grids are unchanged with the EWMA factor β = 0.9", _UNCHANGED),
    _claim("alt_ewma_slow", "Section 7.1 (EWMA factor); Figures 4 and 6",
           "The verdicts of the Figure 4 and Figure 6 grids are unchanged with the EWMA factor β = 0.999", _UNCHANGED),
    _claim("fig6_l2_settles", "Section 7.2.2, Figure 6; fbsgd.theory.small_step_limits",
           "With the strongly convex regularizer the biased runs settle (no escape) at the predicted plateau m‖ā‖",
           "no σ_b escapes, and measured / predicted plateau within 0.8–1.25 for every σ_b"),
    _claim("tol_metric_every", "Section 7.1 (metric)",
           "Evaluating the exact gradient norm every metric_every iterations instead of every iteration keeps the "
           "reported numbers within 2% (stable norm) and one interval + 5% (stable iteration)",
           "relative change of every stable norm ≤ 2 %, of every stable iteration ≤ one metric interval + 5 %", _TOL),
    _claim("tol_precision", "Section 7.1 (arithmetic)",
           "A float32 perturbed pass instead of float64 keeps the reported numbers within 0.5% (stable norm) "
           "and one interval + 1% (stable iteration)",
           "relative change of every stable norm ≤ 0.5 %, of every stable iteration ≤ one metric interval + 1 %", _TOL),
    _claim("tol_metric_in_pass", "Section 7.1 (metric)",
           "Computing the exact gradient norm inside the perturbed pass instead of in a separate float64 pass "
           "changes no verdict of the book",
           "0 of the rejudged Figure 4 verdicts change outcome (the key number, the largest relative change of the "
           "stable norm, shows the scale of the change)", _TOL),
    _claim("fig3_sigma_f", "Section 7.2.1, Figure 3 (σ_f of the left panel)",
           "Both printed values of Figure 3's forward size, σ_f = 1.0 (text) and 2.0 (caption), pin the stable "
           "gradient norm at a floor",
           "each of the two levels pinned by the rule of the Figure 4 forward verdict (small-step slope < 0.1)"),
]
