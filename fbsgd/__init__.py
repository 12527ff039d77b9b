"""fbsgd: an executable companion to "On the Convergence of Stochastic Gradient
Descent with Perturbed Forward-Backward Passes" (Kong, Zhang, Yuan, 2026).

Modules follow the paper's concepts:

=====================  =====================================================================
``operators``          the operators f_i of eq. (1b) with their Jacobian products
``passes``             the composite F and the passes of eqs. (4) and (5)
``perturbations``      δ and ε as composable objects that describe themselves (law, schedule)
``lowprec``            rounding to bfloat16 / float16 / float8 and bit flips, with integer bit operations
``rng``                the counter-based random streams behind every draw
``regularizers``       R(w) of Section 7
``problems``           the logistic regression of Section 7, linear networks
``optimizers``         update rules (plain, heavy ball, Adam) and descent loops
``counterexamples``    Appendix A
``propagation``        Section 4 measured: errors injected into deep chains
``bounds``             Section 4 evaluated: Lemmas 1–2, eqs. (21) and (33)
``rates``              Sections 5–6: schedules, budgets, power-law fits, bound evaluation
``engine``             the compiled Section 7 kernel (numba), all configurations in lockstep
``sweeps``             Section 7 configurations, content cache, tidy tables
``provenance``         what a result depends on: the source of the modules a run imports, the stack
``limits``             γ → 0 predictions of the Section 7 floors and plateaus
``experiments``        the Section 7 grids, figures' specs and verdicts
``forward_gradients``  forward-mode gradient estimates as perturbed backward passes
``sgd_derivatives``    the Jacobian recursion of SGD as a perturbed SGD
``metrics``            fits and smoothing; ``report``/``figures``: tables, verdicts, plots
``params``             checked notebook parameters and the paper/quick scale
=====================  =====================================================================
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fbsgd")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

from .passes import Composite, Passes, perturbed_passes  # noqa: E402,F401
from .perturbations import Plan  # noqa: E402,F401
