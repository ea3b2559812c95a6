"""The fused batch decision against the per-request one, on random tables.

``fused._decide_many`` (the replay's path) and ``fused._decide_one`` (the
live path, one request) must give bit-identical probabilities, the same
eligibility, the same greedy column (the first of the highest value, also
with equal values and NaN) and the same eligible counts.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from clickrouter.serving.engine.fused import _decide_many, _decide_one

N_FIELDS = 7


@st.composite
def requests(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 70))
    rows_per_field = 3
    if draw(st.booleans()):  # few distinct values: equal expected values are frequent
        table = rng.choice([0.5, 1.0, 2.0, 4.0], (N_FIELDS * rows_per_field, n))
    else:
        table = np.exp(rng.normal(0, 2, (N_FIELDS * rows_per_field, n)))
    if draw(st.booleans()):  # inf x 0 in a product: a NaN probability
        column = rng.integers(n)
        table[:rows_per_field, column] = np.inf  # every row of field 0
        table[rows_per_field : 2 * rows_per_field, column] = 0.0  # and of field 1
    payouts = rng.choice([1.0, 2.0], n) if draw(st.booleans()) else rng.uniform(0.1, 5, n)
    active = rng.random(n) < draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))
    fields = np.sort(rng.choice(N_FIELDS, draw(st.integers(0, 3)), replace=False)).astype(np.intp)
    targeting = rng.random((max(1, len(fields) * rows_per_field), n)) < 0.6
    base = (np.arange(len(fields)) * rows_per_field - fields * rows_per_field).astype(np.intp)
    m = draw(st.integers(1, 20))
    slots = np.arange(N_FIELDS) * rows_per_field + rng.integers(0, rows_per_field, (m, N_FIELDS))
    return table, slots.astype(np.intp), active, targeting, fields, base, payouts


@settings(max_examples=300, deadline=None)
@given(requests())
def test_the_batch_decides_as_one_request_at_a_time(args: tuple[np.ndarray, ...]) -> None:
    table, slots, active, targeting, fields, base, payouts = args
    m, n = len(slots), table.shape[1]
    proba, mask = np.empty((m, n)), np.empty((m, n), dtype=np.bool_)
    best, n_eligible = np.zeros((m, 1), dtype=np.intp), np.empty(m, dtype=np.int64)
    _decide_many(
        table, slots, active, targeting, fields, base, payouts, proba, mask, best, n_eligible
    )
    for i in range(m):
        one_proba, one_mask = np.empty(n), np.empty(n, dtype=np.bool_)
        one_best = np.zeros(1, dtype=np.intp)
        count = _decide_one(
            table, slots[i], active, targeting, fields, base, payouts, one_proba, one_mask, one_best
        )
        assert np.array_equal(proba[i], one_proba, equal_nan=True)
        assert np.array_equal(mask[i], one_mask)
        assert n_eligible[i] == count
        assert best[i, 0] == (one_best[0] if count else 0)
