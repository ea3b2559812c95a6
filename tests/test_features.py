"""FeatureSpace: slot layout, OOV handling, sparse design matrix, serialisation."""

from __future__ import annotations

import numpy as np
import pytest

from clickrouter.errors import InvalidInput
from clickrouter.features import OOV, FeatureSpace
from clickrouter.profile import UNKNOWN

PROFILE = {
    "country": "FR",
    "device": "iphone",
    "os": "ios",
    "browser": "safari",
    "provider": "orange",
    "local_hour": 5,
    "local_weekday": 6,
}


def make_space() -> FeatureSpace:
    return FeatureSpace({"country": ["FR", "DE", UNKNOWN], "os": ["ios", "android"]})


def test_each_field_owns_a_block_starting_with_its_oov_slot() -> None:
    space = make_space()
    assert space.vocabularies["country"] == (OOV, "FR", "DE", UNKNOWN)
    assert (
        space.vocabularies["local_hour"][0] == OOV and len(space.vocabularies["local_hour"]) == 25
    )
    assert space.n_slots == sum(len(v) for v in space.vocabularies.values())


def test_indices_pick_one_slot_per_field_and_oov_for_unseen_values() -> None:
    space = make_space()
    idx = space.indices(PROFILE)
    assert len(idx) == len(space.fields)
    names = space.slot_names()
    assert names[idx[0]] == "country=FR"
    assert names[idx[1]] == f"device={OOV}"  # device vocabulary is empty
    assert names[idx[5]] == "local_hour=5"
    unseen = space.indices({**PROFILE, "country": "BR"})
    assert names[unseen[0]] == f"country={OOV}"


def test_unknown_is_an_ordinary_value_distinct_from_oov() -> None:
    space = make_space()
    assert space.local_index("country", UNKNOWN) == 3
    assert space.local_index("country", "never-seen") == 0


def test_transform_is_a_one_hot_csr_matrix() -> None:
    space = make_space()
    design = space.transform([PROFILE, {**PROFILE, "os": "android"}])
    assert design.shape == (2, space.n_slots)
    assert np.array_equal(design.sum(axis=1).A1, [7, 7])
    assert np.array_equal(design[0].indices, space.indices(PROFILE))


def test_fit_counts_values_and_round_trips_through_json(tmp_path) -> None:
    space = FeatureSpace.fit([PROFILE, PROFILE, {**PROFILE, "country": "DE"}], min_count=2)
    assert space.vocabularies["country"] == (OOV, "FR")
    path = tmp_path / "space.json"
    space.save(path)
    assert FeatureSpace.load(path) == space


def test_invalid_documents_and_fields_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="unknown feature fields"):
        FeatureSpace({"shoe_size": ["42"]})
    with pytest.raises(InvalidInput, match=r"outside 0\.\.23"):
        FeatureSpace({"local_hour": [24]})
    with pytest.raises(InvalidInput, match="not a FeatureSpace"):
        FeatureSpace.from_dict({"format": 99})
