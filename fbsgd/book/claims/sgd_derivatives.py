"""Claims judged by the chapter on derivatives of SGD (``chapters/sgd_derivatives.ipynb``).

"related" claims are those of the work the chapter reproduces: Iutzeler, Pauwels and Vaiter
(2024), "Derivatives of Stochastic Gradient Descent in Parametric Optimization" (NeurIPS
poster, /work/shared/references/related-derivatives-of-sgd-poster.txt).  The checks of the
implementation, the exact least-squares moments and the connection to Kong et al.'s
perturbed passes are the book's own probes.  Every claim belongs to the ledger's part "Related work"."""
from fbsgd.book.verdicts import Claim

_C = "sgd_derivatives"
_IPV = "Iutzeler, Pauwels, Vaiter (2024)"
_PROBLEM = "the-problem-parametric-least-squares"  # the section of the finite-difference checks (the heading's id)
# claim name -> the figure, or the section holding the table, that decides it on the chapter's page
_DECIDED_BY = {"unrolled_derivative": _PROBLEM, "solution_jacobian": _PROBLEM, "plateau_linear": "fig-sgdd-plateau",
               "ols_exact_plateau": "fig-sgdd-plateau", "ols_below_bound": "fig-sgdd-plateau",
               "decreasing_rate": "fig-sgdd-decreasing", "log2_not_tight": "fig-sgdd-decreasing",
               "interpolation_rate": "fig-sgdd-interpolation", "interpolation_exact": "fig-sgdd-interpolation",
               "simple_interpolation": "fig-sgdd-constant", "ols_error_zero": "sec-sgdd-error-term",
               "error_term_orders": "fig-sgdd-error-term", "pl_condition_edge": "fig-sgdd-error-term"}


def _claim(id, **kw):
    """A claim of this chapter: in the ledger's part "Related work", decided where :data:`_DECIDED_BY` says."""
    return Claim(id=id, section="Related work", decided_by=_DECIDED_BY[id.split(".", 1)[1]], **kw)


CLAIMS = [
    _claim(id=f"{_C}.unrolled_derivative", chapter=_C, ref="SGD′ recursion (chain rule through the unrolled iterates)",
          source="book", text="SGD′ is the derivative of the unrolled SGD iterates (and the compiled kernel agrees with the numpy reference)"),
    _claim(id=f"{_C}.solution_jacobian", chapter=_C, ref="implicit function theorem", source="book",
          text="D* is the derivative of the solution map θ ↦ x*(θ)"),
    _claim(id=f"{_C}.plateau_linear", chapter=_C, ref=f"{_IPV}, general estimate (constant steps; stated for η₀ ≤ μ/(4L²), tested here at larger steps)",
          source="related",
          text="With a constant step the Jacobian error settles at a level proportional to the step"),
    _claim(id=f"{_C}.ols_exact_plateau", chapter=_C, ref="exact moment recursions for least squares (β = 0)", source="book",
          text="For least squares the measured plateau is the exact stationary level of the moment recursion"),
    _claim(id=f"{_C}.ols_below_bound", chapter=_C, ref=f"{_IPV}, constant-step bound 4σ²η/μ (M = 0; stated for η₀ ≤ μ/(4L²), tested here at larger steps)",
          source="related",
          text="For least squares the plateau lies below the bound 4σ²η/μ"),
    _claim(id=f"{_C}.decreasing_rate", chapter=_C, ref=f"{_IPV}, sublinear rate O(log²k/k)", source="related",
          text="With steps ∝ 1/k the Jacobian error decays at least as fast as log²k/k"),
    _claim(id=f"{_C}.log2_not_tight", chapter=_C, ref=f"{_IPV}, sublinear rate O(log²k/k) (an upper bound)", source="book",
          text="The bound's extra log² factor does not show: the measured decay is closer to a clean 1/k than to the "
               "log²k/k shape (the bound is an upper bound and need not be tight)"),
    _claim(id=f"{_C}.interpolation_rate", chapter=_C, ref=f"{_IPV}, interpolation regime (σ = 0): O(k(1 − 1/(8κ²))^k) at η = η₀ = μ/(4L²), and "
              "the O(k(1 − μη/2)^k) of the auxiliary inexact-SGD table", source="related",
          text="Interpolation (σ = 0) with a constant step: the Jacobian converges linearly, at least as fast as (1 − μη/2)^k"),
    _claim(id=f"{_C}.interpolation_exact", chapter=_C, ref="spectral radius of the second-moment map (β = 0)", source="book",
          text="For least squares in double interpolation the measured factor per step is the exact spectral radius"),
    _claim(id=f"{_C}.simple_interpolation", chapter=_C, ref=f"the book's inference for {_IPV}'s simple-interpolation setting (listed on the poster, "
              "outcome not stated; σ_x = 0 but σ_D > 0)", source="book",
          text="Simple interpolation: the iterates converge linearly, but the Jacobian still stalls at an O(η) plateau"),
    _claim(id=f"{_C}.ols_error_zero", chapter=_C, ref=f"{_IPV}, the rewrite of SGD′ as SGD on (Opt′) plus e_(k+1)", source="book",
          text="For ordinary least squares the error term vanishes: SGD′ is exactly SGD on (Opt′)"),
    _claim(id=f"{_C}.error_term_orders", chapter=_C, ref="Kong et al., eq. (5) (forward perturbation) and Lemma 2", source="book",
          text="For β > 0 the error term is a bias of forward-perturbation type: a power of the deviation x_k − x* "
               "(1 in general, 2 at zero residual, 3 in double interpolation), shrinking like √η with constant steps "
               "and like k⁻¹ᐟ² with decreasing steps"),
    _claim(id=f"{_C}.pl_condition_edge", chapter=_C, ref="Kong et al., Corollary 1 (PL): bias ≲ T⁻¹ᐟ² ln¹ᐟ² T", source="book",
          text="With decreasing steps the bias meets Kong et al.'s PL condition ‖E δ‖ ≲ T⁻¹ᐟ² ln¹ᐟ² T in order, at the edge"),
]
