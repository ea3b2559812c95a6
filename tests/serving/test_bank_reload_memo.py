"""Reload with the compile memo: unchanged model files are reused, the bank is bit-identical.

Version A is loaded with a bank cache (which fills the memo); version B shares
most files with A byte for byte, changes, adds and removes some, grows the
vocabulary, corrupts one file and names a wrong sha256 for another. B loaded
through the memo must equal B loaded from scratch in every score, decision,
campaign list and reported problem.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

from clickrouter import ModelBank
from clickrouter.errors import NoEligibleCampaign
from clickrouter.profile import CATEGORICAL_FIELDS, NUMERIC_FIELDS, profile_frame
from fakes import fitted_pipeline
from reference.sample_models import campaign_model, random_profiles, template_models

N_CAMPAIGNS = 24
NEW_DEVICES = [f"device-new-{i}" for i in range(4)]


def entry(cid: str, payout: float) -> dict[str, Any]:
    return {
        "id": cid,
        "landing_page": f"https://shop.example/{cid}?k={{click_id}}",
        "payout": payout,
    }


def grown_pipeline(rng: np.random.Generator) -> Pipeline:
    """A model whose encoder knows device values no version-A model knows."""
    profiles = random_profiles(rng, 400)
    for i, profile in enumerate(profiles):
        if i % 3 == 0:
            profile["device"] = NEW_DEVICES[i % len(NEW_DEVICES)]
    frame = profile_frame(profiles)
    labels = rng.random(len(frame)) < 0.3
    pre = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FIELDS)),
        (OneHotEncoder(handle_unknown="ignore"), list(NUMERIC_FIELDS)),
    )
    return make_pipeline(pre, LogisticRegression(max_iter=300)).fit(frame, labels)


def imputer_pipeline(rng: np.random.Generator) -> Pipeline:
    """Compiles, but an imputer rewrites values before the encoder: never memoised."""
    frame = profile_frame(random_profiles(rng, 300))
    labels = rng.random(len(frame)) < 0.3
    imputed = make_pipeline(
        SimpleImputer(missing_values="unknown", strategy="constant", fill_value="FR"),
        OneHotEncoder(handle_unknown="ignore"),
    )
    pre = make_column_transformer((imputed, ["country"]))
    return make_pipeline(pre, LogisticRegression(max_iter=300)).fit(frame, labels)


def forest(rng: np.random.Generator) -> Pipeline:
    frame = profile_frame(random_profiles(rng, 200))
    labels = rng.random(len(frame)) < 0.3
    pre = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["country", "os"]))
    model = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)
    return make_pipeline(pre, model).fit(frame, labels)


def write_version(root: Path, models: dict[str, Any], payouts: dict[str, float]) -> Path:
    root.mkdir(parents=True)
    for cid, model in models.items():
        joblib.dump(model, root / f"{cid}.joblib")
    catalog = [entry(cid, payouts[cid]) for cid in models]
    (root / "campaigns.json").write_text(json.dumps(catalog), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """(version A, version B, number of B's files the memo must serve)."""
    rng = np.random.default_rng(11)
    templates = template_models(rng)
    models: dict[str, Any] = {
        f"c{i:03d}": campaign_model(templates[i % 2], rng, 10 ** rng.uniform(-4, -2))
        for i in range(N_CAMPAIGNS)
    }
    models["imputed"] = imputer_pipeline(rng)
    models["forest"] = forest(rng)
    payouts = {cid: round(float(rng.uniform(1, 20)), 2) for cid in models}
    base = tmp_path_factory.mktemp("versions")
    version_a = write_version(base / "A", models, payouts)

    version_b = base / "B"
    shutil.copytree(version_a, version_b)
    for cid in ("c000", "c001", "c002"):  # retrained: new coefficients, same encoders
        joblib.dump(
            campaign_model(templates[int(cid[1:]) % 2], rng, 0.001), version_b / f"{cid}.joblib"
        )
    for cid in ("c003", "c004"):  # campaigns that ended
        (version_b / f"{cid}.joblib").unlink()
        payouts.pop(cid)
    for k in range(2):  # new campaigns with new vocabulary
        joblib.dump(grown_pipeline(rng), version_b / f"new{k}.joblib")
        payouts[f"new{k}"] = 7.5 + k
    corrupt = version_b / "c005.joblib"  # bytes changed: must be reloaded and reported
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    digests = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in version_b.glob("*.joblib")
    }
    digests["c006.joblib"] = "0" * 64  # unchanged bytes, but the manifest disagrees
    manifest = {"version": "B", "files": digests}
    (version_b / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    catalog = [entry(cid, payouts[cid]) for cid in payouts]
    (version_b / "campaigns.json").write_text(json.dumps(catalog), encoding="utf-8")
    # A's memoised models: every c*, less the 3 retrained, 2 removed, 1 corrupt, 1 bad digest
    return version_a, version_b, N_CAMPAIGNS - 7


def test_incremental_load_equals_full_load(
    versions: tuple[Path, Path, int], tmp_path: Path
) -> None:
    version_a, version_b, expected_reuse = versions
    cache = tmp_path / "cache"
    with ModelBank.from_directory(version_a, strict=False, cache_dir=cache) as bank_a:
        assert bank_a.skipped == [] and bank_a.n_generic == 1
        assert bank_a.assembly_.reused == 0  # nothing to reuse yet: every model compiled
    with (
        ModelBank.from_directory(version_b, strict=False) as full,
        ModelBank.from_directory(version_b, strict=False, cache_dir=cache) as incremental,
    ):
        assert incremental.assembly_.reused == expected_reuse
        assert full.assembly_.reused == 0
        assert any(v in full.space.vocabularies["device"] for v in NEW_DEVICES)
        assert_same_bank(full, incremental)


def assert_same_bank(full: ModelBank, incremental: ModelBank) -> None:
    assert incremental.version == full.version == "B"
    assert incremental.campaigns == full.campaigns
    assert incremental.skipped == full.skipped
    assert any("c005.joblib" in p for p in full.skipped)
    assert any("c006.joblib: sha256 differs" in p for p in full.skipped)
    assert incremental.space == full.space
    a, b = incremental.assembly_, full.assembly_
    assert a.compiled_cols.tolist() == b.compiled_cols.tolist()
    assert a.generic_cols.tolist() == b.generic_cols.tolist()
    assert a.generic_reasons == b.generic_reasons
    assert a.table.shape == b.table.shape
    assert np.array_equal(np.asarray(a.table).view(np.uint64), np.asarray(b.table).view(np.uint64))

    profiles = random_profiles(np.random.default_rng(5), 300)
    for i, profile in enumerate(profiles):
        if i % 4 == 0:
            profile["device"] = NEW_DEVICES[i % len(NEW_DEVICES)]
        if i % 7 == 0:
            profile["country"] = "never-seen"
    proba_full = full.predict_proba(profiles)
    proba_incremental = incremental.predict_proba(profiles)
    assert np.array_equal(proba_full.view(np.uint64), proba_incremental.view(np.uint64))
    for profile in profiles[:60]:
        assert decision_of(incremental, profile) == decision_of(full, profile)


def decision_of(bank: ModelBank, profile: dict[str, Any]) -> object:
    try:
        return bank.decide(profile)
    except NoEligibleCampaign:
        return None


def test_memo_entry_is_ignored_when_the_file_bytes_change(
    versions: tuple[Path, Path, int], tmp_path: Path
) -> None:
    version_a, _, _ = versions
    cache = tmp_path / "cache"
    changed = tmp_path / "A2"
    shutil.copytree(version_a, changed)
    tweaked = copy.deepcopy(joblib.load(changed / "c010.joblib"))
    tweaked.steps[-1][1].intercept_ = tweaked.steps[-1][1].intercept_ + 1.0
    joblib.dump(tweaked, changed / "c010.joblib")
    profiles = random_profiles(np.random.default_rng(8), 50)
    with ModelBank.from_directory(version_a, strict=False, cache_dir=cache) as before:
        proba_before = before.predict_proba(profiles)
    with (
        ModelBank.from_directory(changed, strict=False, cache_dir=cache) as incremental,
        ModelBank.from_directory(changed, strict=False) as full,
    ):
        assert incremental.assembly_.reused == N_CAMPAIGNS - 1
        proba = incremental.predict_proba(profiles)
        assert np.array_equal(proba.view(np.uint64), full.predict_proba(profiles).view(np.uint64))
        column = full.column_of("c010")
        assert not np.array_equal(proba_before[:, column], proba[:, column])
        others = [j for j in range(proba.shape[1]) if j != column]
        assert np.array_equal(proba_before[:, others], proba[:, others])


def settled_directory(root: Path, models: dict[str, Any]) -> Path:
    """A model directory with a manifest, its files last written an hour ago (a
    version published earlier: old enough for this process to remember their digests)."""
    from clickrouter.modelstore import write_manifest

    root.mkdir(parents=True)
    for cid, model in models.items():
        joblib.dump(model, root / f"{cid}.joblib")
    (root / "campaigns.json").write_text(json.dumps([entry(c, 1.0) for c in models]))
    write_manifest(root, {"version": root.name})
    for path in root.iterdir():
        os.utime(path, (path.stat().st_mtime - 3600,) * 2)
    return root


def test_a_model_file_rewritten_in_place_is_read_again(tmp_path: Path) -> None:
    models = {f"c{i}": fitted_pipeline(i) for i in range(3)}
    root = settled_directory(tmp_path / "v1", models)
    cache = tmp_path / "cache"
    for _ in range(2):  # the second load takes every file from its remembered digest
        ModelBank.from_directory(root, cache_dir=cache).close()
    with open(root / "c1.joblib", "r+b") as fh:  # same size, other bytes
        fh.seek(-8, os.SEEK_END)
        fh.write(b"\0" * 8)
    for entry_dir in cache.glob("[0-9a-f]" * 32):  # no bank cache entry: load the files
        shutil.rmtree(entry_dir)
    bank = ModelBank.from_directory(root, cache_dir=cache, strict=False)
    assert bank.campaign_ids == ["c0", "c2"]
    assert "c1.joblib: sha256 differs from manifest.json" in bank.skipped[0]
    bank.close()


def test_a_memo_entry_rewritten_after_this_process_read_it_is_checked_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = settled_directory(tmp_path / "v1", {"c0": fitted_pipeline(0)})
    cache = tmp_path / "cache"
    ModelBank.from_directory(root, cache_dir=cache).close()  # compiles, writes the memo
    shutil.rmtree(next(cache.glob("[0-9a-f]" * 32)))
    with ModelBank.from_directory(root, cache_dir=cache) as bank:  # reads the memo entry
        assert bank.assembly_.reused == 1
    shutil.rmtree(next(cache.glob("[0-9a-f]" * 32)))
    (memo_file,) = cache.glob("memo-*/*.memo")
    data = bytearray(memo_file.read_bytes())
    data[-40] ^= 0xFF  # one payload byte flipped: the MAC no longer matches
    memo_file.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING), ModelBank.from_directory(root, cache_dir=cache) as bank:
        assert bank.assembly_.reused == 0  # probed again from its file
    assert "its MAC does not match" in caplog.text


def trainer_version(root: Path, seed: int, retrained: int) -> Path:
    """A version as the trainer publishes it: one-hot pipelines (some reading the page),
    and several campaigns sharing one base-rate file's bytes."""
    from clickrouter.features import FeatureSpace
    from clickrouter.training.models import Transformers, base_rate_pipeline, logistic_pipeline

    rng = np.random.default_rng(seed)
    transformers = Transformers(FeatureSpace.fit(random_profiles(rng, 300)))
    root.mkdir(parents=True)
    catalog = []
    for i in range(12):
        cid = f"c{i:02d}"
        pages = (f"{cid}-a", f"{cid}-b") if i % 2 else ()
        if i % 3 == 0:  # every version writes the same bytes for these
            model = base_rate_pipeline(transformers(), 0.01)
        else:
            transformer = transformers(pages)
            width = sum(len(c) for _, e, _ in transformer.transformers_ for c in e.categories_)
            coef = rng.normal(0, 1, width) if i < retrained else np.linspace(-1, 1, width)
            model = logistic_pipeline(transformer, coef, -4.0)
        (root / f"{cid}.joblib").write_bytes(pickle.dumps(model, protocol=5))
        urls = [{"id": p, "url": f"https://shop.example/{p}?k={{click_id}}"} for p in pages]
        catalog.append({**entry(cid, 1.0 + i), **({"landing_pages": urls} if urls else {})})
        if urls:
            del catalog[-1]["landing_page"]
    (root / "campaigns.json").write_text(json.dumps(catalog), encoding="utf-8")
    return root


def test_trainer_versions_load_through_the_memo_as_in_full(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = trainer_version(tmp_path / "v1", seed=1, retrained=12)
    second = trainer_version(tmp_path / "v2", seed=1, retrained=5)  # some files as in v1
    for version in (first, second):
        with (
            ModelBank.from_directory(version) as full,
            ModelBank.from_directory(version, cache_dir=cache) as incremental,
        ):
            assert full.n_generic == 0 and incremental.n_generic == 0
            a, b = incremental.assembly_, full.assembly_
            assert np.array_equal(np.asarray(a.table).view(np.uint64), b.table.view(np.uint64))
            profiles = random_profiles(np.random.default_rng(2), 100)
            assert np.array_equal(
                incremental.predict_proba(profiles).view(np.uint64),
                full.predict_proba(profiles).view(np.uint64),
            )
    distinct = {hashlib.sha256(p.read_bytes()).hexdigest() for p in first.glob("*.joblib")}
    distinct |= {hashlib.sha256(p.read_bytes()).hexdigest() for p in second.glob("*.joblib")}
    assert len(list(cache.glob("memo-*/*.memo"))) == len(distinct)
