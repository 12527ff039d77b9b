"""Table 1 of the paper (Section 6.2): the budget exponents it guarantees.

:data:`PAPER_TABLE1` the largest budget exponent a (Q ≲ T^a) that keeps the
rate, by (geometry, pass, mean).  Its comparison with the thresholds measured
across horizons is :mod:`fbsgd.studies.rates.table1`.
"""
from __future__ import annotations

__all__ = ['PAPER_TABLE1']


# Table 1 of the paper: the largest budget exponent a (Q ≲ T^a) that keeps the rate, by
# (geometry, pass, mean); O(1) is a = 0.
PAPER_TABLE1 = {
    ("nonconvex", "forward", "zero"): 0.5, ("nonconvex", "backward", "zero"): 1.0,
    ("nonconvex", "forward", "nonzero"): 0.5, ("nonconvex", "backward", "nonzero"): 0.5,
    ("pl", "forward", "zero"): 0.0, ("pl", "backward", "zero"): 1.0,
    ("pl", "forward", "nonzero"): 0.0, ("pl", "backward", "nonzero"): 0.0,
}
