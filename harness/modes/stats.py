"""The statistics of "k of N runs hit it": a one-sided Fisher exact test of two
sides' rates, and the N per side that 90% power would need.

A race that shows in a quarter of runs gives 0/4 a third of the time, so
"it did not happen on the patched kernel" means nothing without the
numbers. Exact and small: math.comb, no scipy.
"""

from __future__ import annotations

import math
from functools import lru_cache

ALPHA = 0.05
POWER = 0.9
MAX_N = 400  # beyond this, "more runs than anyone will do"


def fisher_greater(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided p-value that side 1's rate exceeds side 2's: the chance,
    with both sides' hits pooled and dealt out at random, that side 1 gets
    at least ``k1`` of them (hypergeometric upper tail)."""
    if not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError(f"hits out of range: {k1}/{n1}, {k2}/{n2}")
    total, hits = n1 + n2, k1 + k2
    denom = math.comb(total, hits)
    upper = sum(math.comb(n1, k) * math.comb(n2, hits - k) for k in range(k1, min(n1, hits) + 1))
    return upper / denom


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@lru_cache(maxsize=None)
def _critical(n: int, hits: int, alpha: float) -> int:
    """The smallest k1 that rejects at ``alpha`` with ``hits`` pooled over two sides of ``n``
    (n + 1 if none does): the upper tail summed from the top down, in floats
    (power() asks this for every pooled count of every N it tries)."""
    lo, hi = max(0, hits - n), min(n, hits)
    log_total = _log_comb(2 * n, hits)
    tail, critical = 0.0, n + 1
    for k1 in range(hi, lo - 1, -1):
        tail += math.exp(_log_comb(n, k1) + _log_comb(n, hits - k1) - log_total)
        if tail > alpha * (1 + 1e-9):
            break
        critical = k1
    return critical


def _binom(n: int, p: float) -> list[float]:
    return [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


def power(p1: float, p2: float, n: int, alpha: float = ALPHA) -> float:
    """The chance that n runs per side show side 1 > side 2 at ``alpha``, for true rates p1, p2."""
    b1, b2 = _binom(n, p1), _binom(n, p2)
    return sum(b1[k1] * b2[k2] for k1 in range(n + 1) for k2 in range(n + 1)
               if k1 >= _critical(n, k1 + k2, alpha))


def runs_for_power(p1: float, p2: float, target: float = POWER, alpha: float = ALPHA) -> int | None:
    """The smallest N per side with ``target`` power for rates p1 > p2 (None: p1 <= p2,
    or more than MAX_N). Power is not monotone in N for exact tests, so the
    answer is the first N that reaches it, found by a doubling then a scan."""
    if p1 <= p2:
        return None
    hi = 2
    while power(p1, p2, hi, alpha) < target:
        hi *= 2
        if hi > MAX_N:
            return None
    lo = hi // 2
    for n in range(max(1, lo), hi + 1):
        if power(p1, p2, n, alpha) >= target:
            return n
    return hi
