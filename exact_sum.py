"""Exact sums of float64 values that do not depend on order or grouping.

A float sum rounds at every step, so summing the same scores chunk by chunk, or partition
by partition on Spark, gives means that differ in the last bits. `ExactSum` keeps the sum
exactly (each value split into an integer mantissa and a power of two, mantissas added per
exponent as integers), so any grouping of the same values, merged in any order, gives the
same correctly rounded mean. A helper module: it imports nothing of ours.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

_MANTISSA_BITS = 53
_HALF = 26  # each mantissa is added as two halves, so a chunk's per-exponent sums stay exact in float64
_OFFSET = 1074  # frexp exponents of finite float64 values run from -1073 to 1024
_SLOTS = _OFFSET + 1025
_MAX_CHUNK = 1 << 25  # rows per bincount call: below 2**53 / 2**27, the float sums stay integers


class ExactSum:
    """The exact sum of finite float64 values; `add` chunks, `merge` partial sums, then `mean`."""

    def __init__(self) -> None:
        self.high = np.zeros(_SLOTS, dtype=np.int64)
        self.low = np.zeros(_SLOTS, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        for start in range(0, values.size, _MAX_CHUNK):
            mantissa, exponent = np.frexp(values[start:start + _MAX_CHUNK])
            digits = (mantissa * float(1 << _MANTISSA_BITS)).astype(np.int64)  # exact: |digits| < 2**53
            slot = exponent + _OFFSET
            self.high += np.bincount(slot, weights=digits >> _HALF, minlength=_SLOTS).astype(np.int64)
            self.low += np.bincount(slot, weights=digits & ((1 << _HALF) - 1), minlength=_SLOTS).astype(np.int64)

    def merge(self, other: "ExactSum") -> "ExactSum":
        self.high += other.high
        self.low += other.low
        return self

    def exact(self) -> Fraction:
        """The sum as an exact fraction."""
        total = 0
        for slot in np.flatnonzero(self.high | self.low):
            total += ((int(self.high[slot]) << _HALF) + int(self.low[slot])) << int(slot)
        return Fraction(total, 1 << (_OFFSET + _MANTISSA_BITS))

    def mean(self, count: int) -> float | None:
        """The correctly rounded mean of `count` values (None when there are none)."""
        return float(self.exact() / count) if count else None
