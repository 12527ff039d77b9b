"""fbsgd: an executable companion to "On the Convergence of Stochastic Gradient
Descent with Perturbed Forward-Backward Passes" (Kong, Zhang, Yuan, 2026).

The package is built in floors (ARCHITECTURE.md); each imports only from the floors below it.

========================  ==================================================================
The library (this folder: what a researcher imports)
``operators``             the operators f_i of eq. (1b) with their Jacobian products
``passes``                the composite F and the passes of eqs. (4) and (5)
``perturbations``         δ and ε as composable objects that describe themselves (law, schedule,
                          compiled form); ``Plan`` places them in a chain
``correctors``            perturbation kinds with memory that correct others (delta compression,
                          forward de-biasing)
``lowprec``, ``vecmath``  rounding to bfloat16 / float16 / float8 and bit flips, with bit operations
``rng``                   the counter-based random streams behind every draw
``regularizers``          R(w) of Section 7
``problems``              the logistic regression of Section 7, linear networks
``optimizers``            update rules (plain, heavy ball, Adam), sampling noise, the SGD loop
``metrics``               fits, smoothing, settling
``theory/``               the paper's formulas: error bounds (Section 4), rate bounds (34)/(38),
                          γ → 0 limits, closed forms of the logistic chain, Table 1
``engine/``               the compiled engine: lockstep kernels, ``sweeps.run_sweep`` and its cache,
                          provenance, workers
``book/``                 the book's machinery: parameters, costs, claims, verdicts, ledger, tables,
                          status, the figure style
``studies/<chapter>/``    each chapter's study code (``study``, ``verdicts``, ``figures``); ``rates``
                          and ``section7`` are shared by several chapters
========================  ==================================================================
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fbsgd")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

from fbsgd.passes import Composite, Passes, perturbed_passes  # noqa: E402,F401
from fbsgd.perturbations import Plan  # noqa: E402,F401
