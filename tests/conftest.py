import numpy as np
import pytest


def central_difference(f, x, h=1e-6):
    """Jacobian-free directional check helper: returns d/dt f(x + t e_k) for all k."""
    x = np.asarray(x, dtype=float)
    grads = []
    for k in range(x.size):
        e = np.zeros_like(x)
        e.flat[k] = h
        grads.append((f(x + e) - f(x - e)) / (2 * h))
    return np.array(grads)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
