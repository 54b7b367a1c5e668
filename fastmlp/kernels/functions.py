"""Elementary functions for kernels: exp, sigmoid and tanh that vectorise in float32.

Numba's loops over libm's exp and tanh do not vectorise, which makes them the
slowest part of a sigmoid or tanh layer. For float32 these are computed instead
by Cody-Waite range reduction, x = n ln2 + r with |r| <= ln2 / 2, a degree-7
Taylor polynomial for e^r (its truncation error, below 5e-9, is far under
float32 rounding) and 2^n assembled from its exponent bits. Errors measured
against float64 libm over float32 inputs (see tests/test_kernels_functions.py):
exp at most 1.3 ulp, sigmoid at most 2.5 ulp (absolute 9e-8), tanh at most
2.7 ulp (absolute 1.5e-7), including inputs near 0. float64 uses libm exactly.
"""

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import specialise

_LOG2E = 1.4426950408889634
# ln 2 in two parts: n * _LN2_HIGH is exact in float32 for the |n| <= 128 used here.
_LN2_HIGH = 0.693359375
_LN2_LOW = -2.12194440e-4
# exp overflows float32 above 88.72 and goes subnormal below -87.34; the clamps keep
# n + 127 a valid biased exponent.
_EXP_MIN = -87.3
_EXP_MAX = 88.37


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE-754 bit pattern is the low 32 bits of the integer `bits`."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def fused_multiply_add(typingctx, a, b, c):
    """a * b + c rounded once (LLVM's fma), for code whose every rounding must be reproduced
    elsewhere, e.g. in a vector tile; a, b and c of one float type."""
    if not (isinstance(c, types.Float) and a == c and b == c):
        return None

    def codegen(context, builder, signature, args):
        kind = context.get_value_type(signature.return_type)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(kind, [kind] * 3),
                                             f"llvm.fma.f{c.bitwidth}")
        return builder.call(fma, list(args))

    return c(a, b, c), codegen


def expm1_parts(x):
    """(q, s) with exp(x) - 1 = q * s + (s - 1) and exp(x) = q * s + s."""
    raise NotImplementedError("for use inside kernels only")


def exp(x):
    """e^x"""
    return math.exp(x)


def expm1(x):
    """e^x - 1, accurate near 0"""
    return math.expm1(x)


def sigmoid(x):
    """1 / (1 + e^-x), without overflow"""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def tanh(x):
    """tanh x"""
    return math.tanh(x)


@specialise(expm1_parts)
def _expm1_parts(x):
    if x != types.float32:
        return None

    def impl(x):
        f = np.float32
        x = min(max(x, f(_EXP_MIN)), f(_EXP_MAX))
        n = np.floor(x * f(_LOG2E) + f(0.5))
        r = x - n * f(_LN2_HIGH) - n * f(_LN2_LOW)
        p = f(1 / 5040)
        p = p * r + f(1 / 720)
        p = p * r + f(1 / 120)
        p = p * r + f(1 / 24)
        p = p * r + f(1 / 6)
        p = p * r + f(1 / 2)
        q = p * r * r + r  # e^r - 1, free of cancellation near 0
        scale = _float32_from_bits((np.int32(n) + np.int32(127)) << 23)
        return q, scale
    return impl


@specialise(exp)
def _exp(x):
    if x == types.float32:
        def impl(x):
            q, scale = expm1_parts(x)
            # Below the clamp the true value is subnormal or 0: return 0, never a subnormal.
            return q * scale + scale if x >= np.float32(_EXP_MIN) else np.float32(0)
        return impl
    return lambda x: np.exp(x)


@specialise(expm1)
def _expm1(x):
    if x == types.float32:
        def impl(x):
            q, scale = expm1_parts(x)
            return q * scale + (scale - np.float32(1))
        return impl
    return lambda x: np.expm1(x)


@specialise(sigmoid)
def _sigmoid(x):
    if x == types.float32:
        def impl(x):
            one = np.float32(1)
            # For x below -_EXP_MAX, 1 / (1 + e^-x) would be subnormal: return 0 instead.
            return one / (one + exp(-x)) if x >= np.float32(-_EXP_MAX) else np.float32(0)
        return impl

    def impl_exact(x):
        one = type(x)(1)
        if x >= 0:
            return one / (one + np.exp(-x))
        e = np.exp(x)
        return e / (one + e)
    return impl_exact


@specialise(tanh)
def _tanh(x):
    if x == types.float32:
        def impl(x):
            m = expm1(np.float32(-2) * abs(x))
            t = -m / (np.float32(2) + m)
            return t if x >= np.float32(0) else -t
        return impl
    return lambda x: np.tanh(x)
