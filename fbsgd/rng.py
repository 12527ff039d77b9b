"""Counter-based random numbers.

Every random number in fbsgd is a pure function of ``(key, step, index)``:
the 64-bit ``key`` names a stream (one perturbation at one place in one
configuration), ``step`` is the SGD iteration and ``index`` the position
inside the perturbed array (sample, coordinate).  The draw is the SplitMix64
output function applied to ``key + (counter + 1) * golden_gamma`` with
``counter = step * 2**32 + index``, i.e. SplitMix64 read at a chosen position
instead of sequentially.

Consequences that the rest of the package relies on:

* a configuration's draws do not depend on what else runs in the same batch,
  on the order of configurations, or on how a sweep is chunked;
* the compiled sweep engine and the plain numpy passes read *the same* numbers,
  so they can be checked against each other;
* no generator object has to be carried around or pickled; a stream's whole
  state is its key plus the step counter.

``tests/test_rng.py`` runs uniformity, independence and moment tests on the
stream.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
from numba import njit

__all__ = [
    "derive_key",
    "fold_key",
    "uniform",
    "normal",
    "uniform01_scalar",
    "uniform01_f32",
    "normal_scalar",
]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_TWO_M53 = 1.0 / 9007199254740992.0  # 2**-53
_TWO_PI = 2.0 * math.pi


def derive_key(*parts: object) -> int:
    """A 64-bit stream key from any printable identity (names, seeds, indices).

    Uses BLAKE2b of the ``repr`` of the parts, so equal identities give equal
    keys on every machine and Python version.
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def fold_key(key: int, *parts: object) -> int:
    """A child key of ``key`` (for sub-streams of a composite perturbation)."""
    return derive_key(int(key), *parts)


@njit(inline="always", cache=True)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def uniform01_scalar(key, step, index):
    """U[0, 1) draw number ``index`` of stream ``key`` at iteration ``step``."""
    ctr = (np.uint64(step) << _S32) + np.uint64(index) + np.uint64(1)
    z = _mix(np.uint64(key) + ctr * _GOLDEN)
    return np.float64(z >> _S11) * _TWO_M53


_F32_U24 = np.float32(1.0 / 16777216.0)  # 2**-24
_S40 = np.uint64(40)


@njit(inline="always", cache=True)
def uniform01_f32(key, step, index):
    """The draw of :func:`uniform01_scalar` rounded down to 24 bits, as a float32 in [0, 1)
    (the stream the float32 kernel reads)."""
    ctr = (np.uint64(step) << _S32) + np.uint64(index) + np.uint64(1)
    z = _mix(np.uint64(key) + ctr * _GOLDEN)
    return np.float32(z >> _S40) * _F32_U24


@njit(inline="always", cache=True)
def normal_scalar(key, step, index):
    """N(0, 1) draw (Box-Muller on draws 2*index and 2*index+1)."""
    u1 = uniform01_scalar(key, step, 2 * index)
    u2 = uniform01_scalar(key, step, 2 * index + 1)
    return math.sqrt(-2.0 * math.log1p(-u1)) * math.cos(_TWO_PI * u2)


@njit(cache=True)
def _uniform_fill(out, key, step):
    for i in range(out.size):
        out[i] = uniform01_scalar(key, step, i)


@njit(cache=True)
def _normal_fill(out, key, step):
    for i in range(out.size):
        out[i] = normal_scalar(key, step, i)


def _check(key: int, step: int) -> tuple[np.uint64, int]:
    if not 0 <= int(step) < 2**31:
        raise ValueError(f"step must be in [0, 2**31), got {step}")
    return np.uint64(int(key) % 2**64), int(step)


def uniform(key: int, step: int, shape, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Array of U[low, high) draws; element ``i`` (C order) is draw ``i``."""
    k, s = _check(key, step)
    out = np.empty(shape, dtype=np.float64)
    if out.size >= 2**32:
        raise ValueError("at most 2**32 draws per stream and step")
    _uniform_fill(out.reshape(-1), k, s)
    if low != 0.0 or high != 1.0:
        out *= high - low
        out += low
    return out


def normal(key: int, step: int, shape, std: float = 1.0) -> np.ndarray:
    """Array of N(0, std**2) draws; element ``i`` (C order) is draw ``i``."""
    k, s = _check(key, step)
    out = np.empty(shape, dtype=np.float64)
    if 2 * out.size >= 2**32:
        raise ValueError("at most 2**31 normal draws per stream and step")
    _normal_fill(out.reshape(-1), k, s)
    if std != 1.0:
        out *= std
    return out
