"""Independent calls spread over joblib workers, for the chapters whose runs are not engine sweeps."""
from __future__ import annotations

from typing import Callable, Sequence


def costliest_first(fn: Callable, calls: Sequence[dict], cost: Callable[[dict], float], n_jobs: int = -1) -> list:
    """``[fn(**kw) for kw in calls]``, on ``n_jobs`` joblib workers (-1: all cores).

    The calls are sent in decreasing ``cost(kw)`` so the workers finish together, and the results
    come back in the order of ``calls``.  Each call must be a pure function of its arguments (its
    random streams keyed by a seed among them), so the results do not depend on the workers."""
    from joblib import Parallel, delayed

    order = sorted(range(len(calls)), key=lambda i: -cost(calls[i]))
    out = Parallel(n_jobs=1 if len(calls) < 2 else n_jobs)(delayed(fn)(**calls[i]) for i in order)
    results = [None] * len(calls)
    for i, r in zip(order, out):
        results[i] = r
    return results
