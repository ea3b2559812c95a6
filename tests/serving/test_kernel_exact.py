"""The scoring kernel against the same loops under numba's default error model.

``kernel.probabilities_one`` is compiled with the ``numpy`` error model (IEEE
division, which LLVM vectorises); ``reference.scoring_kernel`` is the same source
with the checked division. On the table's domain, non-negative factors
including zeros, subnormals, huge values and infinities (which the intercept
fold can produce), the probabilities must be bit-identical, NaN included: any
number of fields, repeated slots, one request and many, and called from another
compiled function (as the fused decision path does).

``kernel.top_expected_value`` skips blocks of columns none of which can enter
the top k; the reference ranks every column. Same indices and eligible count
on random values with many ties, NaN and infinite values, any k, any mask.
"""

from __future__ import annotations

import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from clickrouter.serving import kernel
from reference import scoring_kernel as reference

SPECIAL = np.array([0.0, np.inf, 1e-300, 1e300, 1.0, 5e-324, np.nan])


def random_table(seed: int, n_slots: int, n_columns: int, special: float) -> np.ndarray:
    """exp(-contribution) factors, a fraction ``special`` replaced by extreme values."""
    rng = np.random.default_rng(seed)
    table = np.exp(-rng.normal(scale=rng.uniform(0.1, 30.0), size=(n_slots, n_columns)))
    hit = rng.random(table.shape) < special
    table[hit] = rng.choice(SPECIAL, int(hit.sum()))
    return table


def same_bits(got: np.ndarray, want: np.ndarray) -> None:
    """Equal as float64 bit patterns (NaN included), not merely close."""
    assert got.shape == want.shape
    assert np.array_equal(got.view(np.int64), want.view(np.int64))


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_fields=st.sampled_from([1, 2, 3, 6, 7, 7, 7, 8, 12]),
    n_columns=st.integers(1, 700),
    special=st.sampled_from([0.0, 0.0, 0.01, 0.3]),
)
def test_one_request_is_bit_identical(
    seed: int, n_fields: int, n_columns: int, special: float
) -> None:
    table = random_table(seed, 40, n_columns, special)
    slots = np.random.default_rng(seed + 1).integers(0, 40, n_fields).astype(np.intp)
    want, got = np.empty(n_columns), np.full(n_columns, np.nan)
    reference.probabilities_one(table, slots, want)
    kernel.probabilities_one(table, slots, got)
    same_bits(got, want)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_fields=st.sampled_from([4, 7]),
    n_requests=st.integers(1, 30),
    n_columns=st.integers(1, 400),
)
def test_many_requests_are_bit_identical(
    seed: int, n_fields: int, n_requests: int, n_columns: int
) -> None:
    table = random_table(seed, 25, n_columns, 0.01)
    slots = np.random.default_rng(seed + 1).integers(0, 25, (n_requests, n_fields))
    slots = slots.astype(np.intp)
    want, got = np.empty((n_requests, n_columns)), np.full((n_requests, n_columns), np.nan)
    reference.probabilities_many(table, slots, want)
    kernel.probabilities_many(table, slots, got)
    same_bits(got, want)


def test_catalogue_sized_request_is_bit_identical() -> None:
    """At the size the benchmarks measure (15,000 offers), vector tails included."""
    table = random_table(3, 60, 15_001, 0.001)
    slots = np.array([0, 9, 17, 25, 33, 41, 59], dtype=np.intp)
    want, got = np.empty(15_001), np.empty(15_001)
    reference.probabilities_one(table, slots, want)
    kernel.probabilities_one(table, slots, got)
    same_bits(got, want)


@numba.njit(cache=True, nogil=True)
def score_from_compiled_code(table: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    """A compiled caller under the default error model, like the fused decision path."""
    kernel.probabilities_one(table, slots, out)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_columns=st.integers(1, 700))
def test_compiled_caller_is_bit_identical(seed: int, n_columns: int) -> None:
    table = random_table(seed, 30, n_columns, 0.05)
    slots = np.random.default_rng(seed + 1).integers(0, 30, 7).astype(np.intp)
    want, got = np.empty(n_columns), np.full(n_columns, np.nan)
    reference.probabilities_one(table, slots, want)
    score_from_compiled_code(table, slots, got)
    same_bits(got, want)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_columns=st.integers(0, 1500),
    k=st.integers(1, 12),
    eligible=st.floats(0.0, 1.0),
    kind=st.sampled_from(["uniform", "ties", "rising", "special"]),
    mask_dtype=st.sampled_from([np.bool_, np.bool_, np.uint8, np.int64]),
)
def test_ranking_is_identical(
    seed: int, n_columns: int, k: int, eligible: float, kind: str, mask_dtype: type
) -> None:
    rng = np.random.default_rng(seed)
    proba = rng.random(n_columns)
    payouts = rng.uniform(0.5, 40.0, n_columns)
    if kind == "ties":  # few distinct values: ties everywhere
        proba, payouts = np.round(proba, 1), rng.choice([1.0, 2.0, 4.0], n_columns)
    elif kind == "rising":  # every block holds a new best
        proba = np.sort(proba)
    elif kind == "special":
        hit = rng.random(n_columns) < 0.02
        proba[hit] = rng.choice(np.array([np.nan, 0.0, 1.0]), int(hit.sum()))
        hit = rng.random(n_columns) < 0.01
        payouts[hit] = rng.choice(np.array([np.inf, -np.inf, -1.0]), int(hit.sum()))
    mask = (rng.random(n_columns) < eligible).astype(mask_dtype)
    if mask_dtype is np.int64:
        mask *= rng.integers(1, 4, n_columns)  # truthy values other than 1
    want = reference.top_expected_value(proba, payouts, mask, k)
    got = kernel.top_expected_value(proba, payouts, mask, k)
    assert got[1] == want[1]
    assert got[0].tolist() == want[0].tolist()
