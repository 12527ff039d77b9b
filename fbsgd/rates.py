"""Sections 5–6, one import away: the names of the five modules that make them
measurable, re-exported for code written against ``fbsgd.rates``.

=========================  =====================================================
:mod:`fbsgd.rate_design`    schedules (Remarks 1–2), horizons, budgets (Section 6.2),
                            the two geometries and their RunConfigs
:mod:`fbsgd.rate_statistics` power-law fits across horizons, kept/lost rates
:mod:`fbsgd.table1`         Table 1's budgets and their comparison with measurements
:mod:`fbsgd.theorem_bounds` problem constants and the right-hand sides of (34), (38)
:mod:`fbsgd.logistic_forms` gradient-error moments and Assumption 3 constants of the
                            logistic chain (the perturbation terms of (34)/(37)/(38))
=========================  =====================================================
"""
from __future__ import annotations

from .logistic_forms import *  # noqa: F401,F403
from .logistic_forms import __all__ as _forms
from .rate_design import *  # noqa: F401,F403
from .rate_design import __all__ as _design
from .rate_statistics import *  # noqa: F401,F403
from .rate_statistics import __all__ as _statistics
from .table1 import *  # noqa: F401,F403
from .table1 import __all__ as _table1
from .theorem_bounds import *  # noqa: F401,F403
from .theorem_bounds import __all__ as _bounds

__all__ = [*_design, *_statistics, *_table1, *_bounds, *_forms]
