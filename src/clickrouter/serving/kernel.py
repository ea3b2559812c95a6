"""The scoring kernel: all compiled campaigns for one or many requests.

The compiled table stores ``exp(-contribution)`` per (slot, campaign), with
each campaign's ``exp(-intercept)`` folded into one field's rows. A request
activates one slot per field, so

    P(sale) = 1 / (1 + prod_f E[slot_f, :])

is a product of a handful of table rows: no ``exp`` at request time (which
costs more per float64 than the rest of the work), and the
result agrees with sklearn's ``expit(decision_function)`` to ~1e-15. The loop
is compiled by numba so the rows are streamed once, without temporaries.

The P(sale) kernels use numba's ``numpy`` error model: a float division follows
IEEE 754 instead of checking its divisor for zero to raise ``ZeroDivisionError``.
Such a per-column branch would keep LLVM from vectorising the division, the
most expensive instruction of the loop. The divisor ``1 + prod`` is at least 1
for the table's factors (non-negative, possibly infinite), so a check could
never fire: the results are bit-identical to the checked loop's.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, error_model="numpy")
def probabilities_one(table: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    """P(sale) of every column for one request.

    table: (n_slots, n_campaigns) float64; slots: (n_fields,) intp; out: (n_campaigns,).
    """
    if slots.shape[0] == 7:
        # The canonical profile. Named rows let LLVM vectorise one loop that
        # reads each row once and writes out once (~40 % faster than seven
        # passes over out); products in the same order: bit-identical results.
        r0, r1, r2, r3 = table[slots[0]], table[slots[1]], table[slots[2]], table[slots[3]]
        r4, r5, r6 = table[slots[4]], table[slots[5]], table[slots[6]]
        for c in range(out.shape[0]):
            out[c] = 1.0 / (1.0 + r0[c] * r1[c] * r2[c] * r3[c] * r4[c] * r5[c] * r6[c])
        return
    n = table.shape[1]
    first = table[slots[0]]
    for c in range(n):
        out[c] = first[c]
    for j in range(1, slots.shape[0]):
        row = table[slots[j]]
        for c in range(n):
            out[c] *= row[c]
    for c in range(n):
        out[c] = 1.0 / (1.0 + out[c])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def probabilities_many(table: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    """P(sale) for many requests: slots (n_requests, n_fields) -> out (n_requests, n_campaigns)."""
    for i in range(slots.shape[0]):
        probabilities_one(table, slots[i], out[i])


# Columns ranked per block: a block is scanned by one vectorised pass, and only
# a block with an eligible value above the running k-th best is ranked column by
# column. Large enough to amortise the per-block work, small enough that a block
# that must be ranked costs little.
RANK_BLOCK = 128


@numba.njit(cache=True, nogil=True, error_model="numpy")
def top_expected_value(
    proba: np.ndarray, payouts: np.ndarray, mask: np.ndarray, k: int
) -> tuple[np.ndarray, int]:
    """Indices of the k eligible campaigns of highest P(sale) x payout, best first.

    Returns (indices, n_eligible); fewer than k indices when fewer are eligible.
    Ties keep the earlier campaign first. One pass with a small sorted buffer: no
    temporaries the size of the catalogue. Once k campaigns are held, a block in
    which no eligible value beats the k-th best (``value <= kth``, false for NaN)
    is only counted: the column-by-column ranking would skip every one of them.
    """
    best = np.empty(k, dtype=np.intp)
    best_value = np.full(k, -np.inf)
    filled = 0
    n_eligible = 0
    n = proba.shape[0]
    for lo in range(0, n, RANK_BLOCK):
        # Slices, not offsets into the full arrays: numba indexes a loop from 0
        # without its negative-index check, which lets LLVM vectorise the scan.
        hi = min(lo + RANK_BLOCK, n)
        p, y, m = proba[lo:hi], payouts[lo:hi], mask[lo:hi]
        kth = best_value[k - 1] if filled == k else np.nan
        count, above = _count_above(p, y, m, kth)
        n_eligible += count
        if above == 0 and kth == kth:
            continue
        filled = _rank_block(p, y, m, lo, best, best_value, filled)
    return best[:filled], n_eligible


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _count_above(
    proba: np.ndarray, payouts: np.ndarray, mask: np.ndarray, kth: float
) -> tuple[int, int]:
    """(eligible columns, eligible columns whose value is not <= kth): branch-free."""
    count = 0
    above = 0
    for c in range(mask.shape[0]):
        value = proba[c] * payouts[c]
        eligible = mask[c] != 0  # any truthy mask value, as the ranking reads it
        count += eligible
        above += eligible & ((value > kth) | (value != value))
    return count, above


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rank_block(
    proba: np.ndarray,
    payouts: np.ndarray,
    mask: np.ndarray,
    offset: int,
    best: np.ndarray,
    best_value: np.ndarray,
    filled: int,
) -> int:
    """Insert a block's eligible columns into the sorted buffer; return how many it holds.

    Column c of the block is campaign ``offset + c``.
    """
    k = best.shape[0]
    for c in range(mask.shape[0]):
        if not mask[c]:
            continue
        value = proba[c] * payouts[c]
        if filled == k and value <= best_value[k - 1]:
            continue
        j = filled if filled < k else k - 1
        while j > 0 and best_value[j - 1] < value:  # ties keep the earlier campaign first
            best_value[j] = best_value[j - 1]
            best[j] = best[j - 1]
            j -= 1
        best_value[j] = value
        best[j] = offset + c
        if filled < k:
            filled += 1
    return filled
