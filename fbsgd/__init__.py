"""fbsgd: an executable companion to "On the Convergence of Stochastic Gradient
Descent with Perturbed Forward-Backward Passes" (Kong, Zhang, Yuan, 2026).

Modules follow the paper's concepts:

========================  ==================================================================
The chain and its passes
``operators``             the operators f_i of eq. (1b) with their Jacobian products
``passes``                the composite F and the passes of eqs. (4) and (5)
``perturbations``         δ and ε as composable objects that describe themselves (law, schedule)
``lowprec``               rounding to bfloat16 / float16 / float8 and bit flips, with bit operations
``rng``                   the counter-based random streams behind every draw
``regularizers``          R(w) of Section 7
``problems``              the logistic regression of Section 7, linear networks
``optimizers``            update rules (plain, heavy ball, Adam), sampling noise, the SGD loop
Section 4
``propagation``           errors injected into deep chains, measured against the bounds
``bounds``                Lemmas 1–2, eqs. (21) and (33) evaluated
``propagation_study``, ``propagation_verdicts``, ``propagation_figures``, ``amplification``
Sections 5–6
``rate_design``, ``rate_statistics``, ``table1``, ``theorem_bounds``, ``logistic_forms``
                          schedules and budgets, power-law fits, Table 1, the bounds (34)/(38),
                          closed forms of the logistic chain (``rates`` re-exports them)
``convergence_study``, ``budget_design``, ``budget_analysis``, ``rate_plots``
Section 7
``engine``, ``kernel``, ``vecmath``   the compiled kernel (numba), all configurations in lockstep
``sweeps``                configurations, the content cache, tidy tables
``provenance``            what a result depends on: the source of the modules a run imports
``limits``                γ → 0 predictions of the floors and plateaus
``experiments``, ``section7_verdicts``, ``reproducibility``, ``figures``
Appendix A and related systems
``counterexamples``, ``counterexample_verdicts``, ``counterexample_figures``
``forward_gradients``, ``fg_problems``, ``fg_measurements``, ``fg_verdicts``, ``fg_plots``
``sgd_derivatives``, ``sgdd_studies``, ``sgdd_verdicts``, ``sgdd_plots``
Extensions beyond the paper
``mechanisms``, ``mechanism_sweep``, ``mechanism_plots``, ``deep_chain``, ``atlas``
                          real mechanisms: rounding, compression, bit flips, deep chains
``correctors``, ``corrector_runs``, ``corrector_analysis``, ``corrector_plots``
                          error feedback, delta compression, forward de-biasing
The book
``verdicts``, ``claims``  claims and verdicts as records; ``ledger``: the claims ledger, errata
``metrics``               fits and smoothing; ``report``: tables, downloads; ``tables``, ``status``
``params``                checked notebook parameters and the paper/quick scale
========================  ==================================================================
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fbsgd")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

from .passes import Composite, Passes, perturbed_passes  # noqa: E402,F401
from .perturbations import Plan  # noqa: E402,F401
