"""The scoring kernel under numba's default error model: the reference.

``clickrouter.serving.kernel`` compiles its P(sale) loops with the ``numpy``
error model, so LLVM vectorises the division; this is the same source under the
default (Python) error model, which checks every divisor for zero. Kept for the
tests (bit-identical probabilities wherever the check cannot fire) and as the
baseline of the kernel's cost. ``top_expected_value`` is the ranking as one
column-by-column pass, without the kernel's skipping of blocks that cannot
change the top k.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def probabilities_one(table: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    """P(sale) = 1 / (1 + prod_f table[slots[f], c]) of every column c."""
    if slots.shape[0] == 7:
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


@numba.njit(cache=True, nogil=True)
def probabilities_many(table: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    """:func:`probabilities_one` for each row of ``slots`` into the same row of ``out``."""
    for i in range(slots.shape[0]):
        probabilities_one(table, slots[i], out[i])


@numba.njit(cache=True, nogil=True)
def top_expected_value(
    proba: np.ndarray, payouts: np.ndarray, mask: np.ndarray, k: int
) -> tuple[np.ndarray, int]:
    """Indices of the k eligible campaigns of highest P(sale) x payout, best first.

    Returns (indices, n_eligible); fewer than k indices when fewer are eligible.
    One pass with a small sorted buffer: no temporaries the size of the catalogue.
    """
    best = np.empty(k, dtype=np.intp)
    best_value = np.full(k, -np.inf)
    filled = 0
    n_eligible = 0
    for c in range(proba.shape[0]):
        if not mask[c]:
            continue
        n_eligible += 1
        value = proba[c] * payouts[c]
        if filled == k and value <= best_value[k - 1]:
            continue
        j = filled if filled < k else k - 1
        while j > 0 and best_value[j - 1] < value:  # ties keep the earlier campaign first
            best_value[j] = best_value[j - 1]
            best[j] = best[j - 1]
            j -= 1
        best_value[j] = value
        best[j] = c
        if filled < k:
            filled += 1
    return best[:filled], n_eligible
