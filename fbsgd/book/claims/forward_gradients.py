"""Claims judged by the chapter on forward gradients (``chapters/forward_gradients.ipynb``).

"related" claims are those of the related work the chapter reproduces (Gao et al., 2022, a report on
the forward gradients of Baydin et al., 2022), not the paper's; the closed forms the book derives for
the estimator are "book" probes.  Every claim belongs to the ledger's part "Related work"."""
from fbsgd.book.verdicts import Claim

_C = "forward_gradients"
# claim name -> the figure, or the section holding the table, that decides it on the chapter's page
_DECIDED_BY = {"error_rate": "fig-fg-beale", "error_size": "fig-fg-beale", "unbiased": "fig-fg-beale",
               "variance": "fig-fg-variance", "contraction_factor": "fig-fg-variance",
               "contraction_threshold": "fig-fg-variance", "sgd_trains": "fig-fg-sgd", "noise_floor": "sec-fg-sgd",
               "perceptron_steps": "fig-fg-sgd", "adam_slowdown": "fig-fg-adam", "adam_vs_sgd": "sec-fg-adam",
               "adam_mechanism": "sec-fg-adam"}


def _claim(id, **kw):
    """A claim of this chapter: in the ledger's part "Related work", decided where :data:`_DECIDED_BY` says."""
    return Claim(id=id, section="Related work", decided_by=_DECIDED_BY[id.split(".", 1)[1]], **kw)


CLAIMS = [
    _claim(id=f"{_C}.error_rate", chapter=_C, ref="Gao et al. (2022), Figure 1 (Beale function)", source="related",
          text="Averages of K forward gradients approach the true gradient, with an error falling like K⁻¹ᐟ²"),
    _claim(id=f"{_C}.error_size", chapter=_C, ref="closed form E‖ḡ_K − ∇f‖² = (n+1)‖∇f‖²/K", source="book",
          text="The mean squared error of an average of K forward gradients is exactly (n+1)‖∇f‖²/K"),
    _claim(id=f"{_C}.unbiased", chapter=_C, ref="Gao et al. (2022), §3.1, Theorem 1 and Appendix A; Baydin et al. (2022), Theorem 1", source="related",
          text="The forward gradient is unbiased: the grand mean of all draws shows no offset beyond its sampling error"),
    _claim(id=f"{_C}.variance", chapter=_C, ref="closed form from E[vvᵀAvvᵀ] = tr(A)I + 2A; the variance term of Theorem 3",
          source="book",
          text="The variance of a forward gradient is (n+1)‖∇ℓ‖²/K: it grows linearly with the number of weights"),
    _claim(id=f"{_C}.contraction_factor", chapter=_C, ref="closed form on ½‖w‖²: E[‖w⁺‖²|w] = (1 − 2γ + γ²(n+2))‖w‖²",
          source="book",
          text="With forward gradients one SGD step on ½‖w‖² multiplies E‖w‖² by 1 − 2γ + γ²(n+2)"),
    _claim(id=f"{_C}.contraction_threshold", chapter=_C, ref="Theorem 3, variance term: usable step ∝ 1/(n+2)",
          source="book",
          text="With forward gradients the second moment of SGD contracts exactly when γ < 2/(n+2), not γ < 2 as with the exact gradient"),
    _claim(id=f"{_C}.sgd_trains", chapter=_C, ref="Corollary 1 (frequent zero-mean errors); Gao et al. (2022), §4.2, SGD experiment (Figure 2 by the text)",
          source="related",
          text="SGD driven by forward gradients still trains both models (zero-mean errors of size O(‖u‖) keep convergence)"),
    _claim(id=f"{_C}.noise_floor", chapter=_C, ref="Theorem 3, variance term 6Lγ E‖ũ − u‖²", source="book",
          text="The noise floor of SGD with forward gradients is n + 2 times that of backpropagation at small steps, "
               "and matches the linearized prediction"),
    _claim(id=f"{_C}.perceptron_steps", chapter=_C, ref="Theorem 3, variance term (step-size dependence)", source="book",
          text="On the perceptron, forward gradients fall further behind backpropagation the larger the step"),
    _claim(id=f"{_C}.adam_slowdown", chapter=_C, ref="Gao et al. (2022), §4.2 (its Adam figure: Figure 3 by the text, whose caption says SGD; the "
              "captions of Figures 2 and 3 are swapped against the text, and the book follows the text) and §5; "
              "their set-up (two hidden layers of 1024 ReLU units, MNIST) differs from the book's", source="related",
          text="With Adam, forward gradients train a perceptron much more slowly than backpropagation does"),
    _claim(id=f"{_C}.adam_vs_sgd", chapter=_C, ref="a sharper reading of Gao et al. (2022), Section 5", source="book",
          text="Forward gradients do worse with Adam than with SGD"),
    _claim(id=f"{_C}.adam_mechanism", chapter=_C, ref="the book's explanation of Gao et al.'s Adam finding", source="book",
          text="With many weights, Adam's per-coordinate scaling becomes uniform under forward gradients, so a step "
               "advances about lr along −∇ℓ, against up to lr·‖∇ℓ‖₁/‖∇ℓ‖₂ with backprop"),
]
