"""Publishing a version: new models written, unchanged ones carried over as hard links."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clickrouter.catalogue import Campaign
from clickrouter.errors import ModelLoadError
from clickrouter.modelstore import ModelStore, read_version
from clickrouter.modelstore.digests import file_sha256
from clickrouter.serving.bank import ModelBank
from clickrouter.serving.trust import ModelTrust
from clickrouter.training.publish import Placement, publish
from fakes import fitted_pipeline, random_profiles, sklearn_proba

KEY = b"k" * 32


def catalog(*ids: str) -> list[Campaign]:
    return [
        Campaign(id=c, landing_page=f"https://shop.example/{c}?k={{click_id}}", payout=1.0)
        for c in ids
    ]


def record(positives: int) -> dict[str, Any]:
    return {"kind": "logistic", "decision": "promoted", "positives": np.int64(positives)}


@pytest.fixture
def two_versions(tmp_path: Path) -> dict[str, Any]:
    """v1 with models a and b; v2 retrains b and carries a over."""
    store = ModelStore(tmp_path / "store", signing_key=KEY)
    models = {"a": fitted_pipeline(0), "b": fitted_pipeline(1), "b2": fitted_pipeline(2)}
    first = publish(
        store,
        catalog("a", "b"),
        [
            Placement("a", record(3), model=models["a"]),
            Placement("b", record(4), model=models["b"]),
        ],
        {"parent": None},
    )
    old = store.path_of(first)
    second = publish(
        store,
        catalog("a", "b"),
        [
            Placement("a", record(3) | {"decision": "unchanged"}, source=old / "a.joblib"),
            Placement("b", record(9), model=models["b2"]),
        ],
        {"parent": first},
    )
    return {"store": store, "first": first, "second": second, "models": models}


def test_an_unchanged_model_is_the_same_file_and_digest(two_versions: dict[str, Any]) -> None:
    store, first, second = two_versions["store"], two_versions["first"], two_versions["second"]
    old, new = store.path_of(first), store.path_of(second)
    assert os.stat(old / "a.joblib").st_ino == os.stat(new / "a.joblib").st_ino
    assert os.stat(old / "b.joblib").st_ino != os.stat(new / "b.joblib").st_ino
    manifest = read_version(new).manifest
    assert manifest is not None and manifest.parent == first
    assert manifest.files["a.joblib"] == read_version(old).digests["a.joblib"]
    assert manifest.files["b.joblib"] == file_sha256(new / "b.joblib")
    assert manifest.campaigns["b"].positives == 9 and manifest.campaigns["b"].trained_in == second
    assert store.verify(second) == []


def test_a_signed_version_with_carried_files_serves_where_it_is_trusted(
    two_versions: dict[str, Any],
) -> None:
    store, models = two_versions["store"], two_versions["models"]
    directory = store.path_of(two_versions["second"])
    with ModelBank.from_directory(directory, trust=ModelTrust(signing_key=KEY)) as bank:
        profiles = bank.canonical(random_profiles(np.random.default_rng(3), 20))
        proba = bank.predict_proba(profiles)
        for cid, model in (("a", models["a"]), ("b", models["b2"])):
            np.testing.assert_allclose(
                proba[:, bank.column_of(cid)], sklearn_proba(model, profiles)
            )


def test_a_carried_file_changed_since_it_was_published_is_not_vouched_for(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path / "store")
    first = publish(store, catalog("a"), [Placement("a", record(1), model=fitted_pipeline(0))], {})
    old = store.path_of(first) / "a.joblib"
    os.chmod(old, 0o644)
    with open(old, "r+b") as fh:  # corrupted in place after publication
        fh.seek(40)
        fh.write(b"\0\0\0\0")
    second = publish(store, catalog("a"), [Placement("a", record(1), source=old)], {})
    assert any("a.joblib: sha256 differs" in p for p in store.verify(second))
    with pytest.raises(ModelLoadError) as refused:
        ModelBank.from_directory(store.path_of(second))
    assert "sha256 differs" in refused.value.problems[0]


def test_a_store_without_fsync_still_publishes_whole_versions(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store", durable=False)
    version = publish(
        store, catalog("a"), [Placement("a", record(1), model=fitted_pipeline(0))], {}
    )
    store.set_current(version)
    assert store.current() == version and store.verify(version) == []
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_a_record_that_does_not_fit_the_format_fails_the_publish(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    bad = {"kind": "logistic", "positives": -1}
    with pytest.raises(ValueError, match="positives"):
        publish(store, catalog("a"), [Placement("a", bad, model=fitted_pipeline(0))], {})
    assert store.versions() == []
