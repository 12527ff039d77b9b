"""Vectorizable elementary functions for the compiled kernels, and bit casts.

numba's ``math.exp`` calls libm, one scalar at a time (~6 ns); the functions
here are polynomials after Cody–Waite range reduction with the power of two
assembled from bits, so LLVM vectorizes the loops around them (8 float32 or
4 float64 lanes on AVX2).  Accuracy (``tests/test_engine.py``): relative error
below 1e-14 (float64) and 5e-7 (float32) for the sigmoid.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["sigmoid_fast", "sigmoid_fast32", "f64_to_bits", "bits_to_f64", "f32_to_bits", "bits_to_f32", "add_i32",
           "and_i32", "or_i32"]


def _bitcast(from_type, to_type, ir_type):
    """An intrinsic reinterpreting the bits of a ``from_type`` value as ``to_type`` (LLVM bitcast:
    no float operation, no rounding, free on every CPU)."""

    @intrinsic
    def cast(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir_type)

        return to_type(from_type), codegen

    return cast


f64_to_bits = _bitcast(types.float64, types.int64, ir.IntType(64))
bits_to_f64 = _bitcast(types.int64, types.float64, ir.DoubleType())
f32_to_bits = _bitcast(types.float32, types.int32, ir.IntType(32))
bits_to_f32 = _bitcast(types.int32, types.float32, ir.FloatType())
_bits_to_double, _bits_to_float = bits_to_f64, bits_to_f32


def _int32_op(name):
    """An intrinsic for one 32-bit integer operation (LLVM ``add``, ``and``, ``or`` on i32, wrapping).

    numba widens arithmetic on int32 values to int64 (numpy's scalar rules), and a loop over float32
    bit patterns then runs in 64-bit lanes, half as many per vector instruction, with conversions
    between the widths; written with these, it stays 32 bits wide (16 lanes on AVX-512)."""

    @intrinsic
    def op(typingctx, a, b):
        def codegen(context, builder, signature, args):
            return getattr(builder, name)(args[0], args[1])

        return types.int32(types.int32, types.int32), codegen

    return op


add_i32 = _int32_op("add")
and_i32 = _int32_op("and_")
or_i32 = _int32_op("or_")


_LOG2E = 1.4426950408889634
_LN2_HI = 0.693147180369123816490
_LN2_LO = 1.90821492927058770002e-10


@njit(inline="always", cache=True, error_model="numpy")
def _exp(x):
    x = min(max(x, -700.0), 700.0)
    k = np.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720 + r * (
        1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600))))))))))))
    return p * _bits_to_double((np.int64(k) + 1023) << 52)


@njit(inline="always", cache=True, error_model="numpy")
def sigmoid_fast(z):
    """σ(z) = 1 / (1 + e^{-z}), vectorizable."""
    return 1.0 / (1.0 + _exp(-z))


_F32_LOG2E = np.float32(1.4426950408889634)
_F32_LN2_HI = np.float32(0.693145751953125)
_F32_LN2_LO = np.float32(1.428606765330187e-06)
_F32_ONE = np.float32(1.0)


@njit(inline="always", cache=True, error_model="numpy")
def _exp32(x):
    x = min(max(x, np.float32(-87.0)), np.float32(87.0))
    k = np.floor(x * _F32_LOG2E + np.float32(0.5))
    r = (x - k * _F32_LN2_HI) - k * _F32_LN2_LO
    p = _F32_ONE + r * (_F32_ONE + r * (np.float32(0.5) + r * (np.float32(1.0 / 6) + r * (np.float32(1.0 / 24) + r * (
        np.float32(1.0 / 120) + r * np.float32(1.0 / 720))))))
    return p * _bits_to_float((np.int32(k) + np.int32(127)) << np.int32(23))


@njit(inline="always", cache=True, error_model="numpy")
def sigmoid_fast32(z):
    """σ(z) in float32, vectorizable."""
    return _F32_ONE / (_F32_ONE + _exp32(-z))
