"""Claims judged in chapters/counterexamples.ipynb (Appendix A)."""
from fbsgd.book.verdicts import Claim


_A3 = "appendix-a-3-a-top-1-compressor-on-the-backward-pass"  # the section of A.3's tables (the heading's id)


def _c(name, ref, source, text, decided_by):
    return Claim(id=f"counterexamples.{name}", chapter="counterexamples", ref=ref, source=source, text=text,
                 section="Appendix A", decided_by=decided_by)


CLAIMS = [
    _c("a1_bias", "Appendix A.1", "paper", "Zero-mean forward noise biases the expected gradient of a sigmoid", "fig-a1"),
    _c("a1_quadratic", "Appendix A.1; Lemma 2", "book",
       "For small noise the bias is quadratic in the noise size, so its square scales like the fourth moment E‖δ‖⁴ of Lemma 2",
       "fig-a1"),
    _c("a2_limit", "Appendix A.2, eq. (55)", "paper",
       "For any γ < 1/2 (read as 0 < γ < 1/2), gradient descent on x² with a constant forward error δ converges to −δ, "
       "not to the minimizer 0", "fig-a2"),
    _c("a2_wider_range", "Appendix A.2, eq. (55)", "book",
       "The iterates converge to −δ for every 0 < γ < 1, not only for γ < 1/2, and do not for γ ≥ 1", "fig-a2"),
    _c("a3_worked_step", "Appendix A.3", "paper", "The worked first step of Appendix A.3 (plain setting)", _A3),
    _c("a3_top1_fails", "Appendix A.3, Figure 9", "paper",
       "With the paper's settings, the Top-1 runs fail to converge in both panels of Figure 9", "fig-a3"),
    _c("a3_plain_uncompressed", "Appendix A.3, Figure 9 (left)", "paper",
       "In the plain setting (γ = 0.1) the uncompressed method converges, so the failure is caused by the compressor",
       "fig-a3"),
    _c("a3_momentum_contrast", "Appendix A.3, Figure 9 (right)", "paper",
       "In the momentum setting the uncompressed method converges while the Top-1 run does not", "fig-a3"),
    _c("a3_step_size_scan", "Appendix A.3", "book",
       "Top-1 compression destroys convergence at every scanned step size at which the uncompressed method converges",
       _A3),
]
