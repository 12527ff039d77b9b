"""Sections 5–6, one import away: the names of the five modules that make them
measurable, re-exported (``from fbsgd.studies import rates as R``).

* :mod:`fbsgd.studies.rates.schedules`: schedules (Remarks 1–2), horizons, budgets
  (Section 6.2), the two geometries and their RunConfigs;
* :mod:`fbsgd.studies.rates.statistics`: power-law fits across horizons, kept/lost rates;
* :mod:`fbsgd.studies.rates.table1`: Table 1's budgets compared with the measurements;
* :mod:`fbsgd.theory.rate_bounds`: problem constants and the right-hand sides of (34), (38);
* :mod:`fbsgd.theory.logistic_closed_forms`: gradient-error moments and Assumption 3
  constants of the logistic chain (the perturbation terms of (34)/(37)/(38)).
"""
from __future__ import annotations

from fbsgd.theory.logistic_closed_forms import *  # noqa: F401,F403
from fbsgd.theory.logistic_closed_forms import __all__ as _forms
from fbsgd.studies.rates.schedules import *  # noqa: F401,F403
from fbsgd.studies.rates.schedules import __all__ as _design
from fbsgd.studies.rates.statistics import *  # noqa: F401,F403
from fbsgd.studies.rates.statistics import __all__ as _statistics
from fbsgd.studies.rates.table1 import *  # noqa: F401,F403
from fbsgd.studies.rates.table1 import __all__ as _table1
from fbsgd.theory.rate_bounds import *  # noqa: F401,F403
from fbsgd.theory.rate_bounds import __all__ as _bounds

__all__ = [*_design, *_statistics, *_table1, *_bounds, *_forms]
