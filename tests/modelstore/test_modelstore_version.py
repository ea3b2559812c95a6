"""The version format: a format-1 store still loads, future formats and hostile manifests don't.

``fixtures/format1`` is a version directory as the trainer wrote it before
manifests had a ``format_version`` (one logistic and one base-rate campaign,
copied from a real training cycle): it is never rewritten by the code under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from clickrouter.errors import ModelLoadError
from clickrouter.modelstore import ModelStore, read_version, verify
from clickrouter.modelstore.manifest import FORMAT_VERSION, decode_manifest, encode_manifest
from clickrouter.serving.bank import ModelBank
from clickrouter.serving.engine.holder import load_live_bank

FORMAT1 = Path(__file__).parent / "fixtures" / "format1"


def format1_store(tmp_path: Path) -> tuple[ModelStore, str]:
    """A store whose live version is the format-1 fixture, copied byte for byte."""
    store = ModelStore(tmp_path / "store")
    version = json.loads((FORMAT1 / "manifest.json").read_text())["version"]
    store.versions_dir.mkdir(parents=True)
    shutil.copytree(FORMAT1, store.versions_dir / version)
    store.set_current(version)
    return store, version


def test_a_format1_version_reads_as_the_current_format(tmp_path: Path) -> None:
    store, version = format1_store(tmp_path)
    manifest = read_version(store.path_of(version)).manifest
    assert manifest is not None and manifest.format_version == FORMAT_VERSION
    assert manifest.version == version and manifest.parent is None
    big, thin = manifest.campaigns["big1"], manifest.campaigns["thin1"]
    assert (big.kind, big.positives, big.C, big.file) == ("logistic", 271, 0.3, "big1.joblib")
    assert big.metrics is not None and big.metrics.roc_auc == pytest.approx(0.7943130434782608)
    assert big.grid_log_loss is not None and set(big.grid_log_loss) == {
        "0.01",
        "0.03",
        "0.1",
        "0.3",
        "1.0",
    }
    assert (thin.kind, thin.sales, thin.exposure) == ("base_rate", 1, 1000.0)
    assert manifest.feature_space is not None and "country" in manifest.feature_space.fields
    assert store.verify(version) == []
    assert store.manifest(version)["campaigns"]["big1"]["positives"] == 271


def test_a_format1_version_serves_with_its_evidence(tmp_path: Path) -> None:
    store, version = format1_store(tmp_path)
    live = load_live_bank(store.root, None)
    try:
        assert live.store_version == version and live.bank.campaign_ids == ["big1", "thin1"]
        assert live.manifest.campaigns["big1"].sales == 271
        assert live.manifest.campaigns["thin1"].is_logistic is False
    finally:
        live.bank.close()


def test_the_writer_marks_the_format_and_reads_back_what_it_wrote(tmp_path: Path) -> None:
    store, version = format1_store(tmp_path)
    old = read_version(store.path_of(version)).manifest
    assert old is not None
    data = encode_manifest(old)
    assert json.loads(data)["format_version"] == FORMAT_VERSION
    assert decode_manifest(data) == old


def write_manifest_json(directory: Path, edit: Any) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest).replace(json.dumps(HUGE), "1e400"))


HUGE = "<a number too large for a float>"


def test_a_future_format_is_refused_clearly(tmp_path: Path) -> None:
    store, version = format1_store(tmp_path)
    directory = store.path_of(version)
    write_manifest_json(directory, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelLoadError, match="newer than this clickrouter reads"):
        read_version(directory)
    with pytest.raises(ModelLoadError, match="newer than this clickrouter reads"):
        ModelBank.from_directory(directory)


def _set_positives(value: Any) -> Any:
    return lambda m: m["campaigns"]["big1"].update(positives=value)


def _add_file(name: str) -> Any:
    return lambda m: m["files"].update({name: "0" * 64})


HOSTILE = {
    "campaigns not an object": (lambda m: m.update(campaigns=[1, 2]), "invalid manifest"),
    "sales as text": (
        lambda m: m.update(format_version=FORMAT_VERSION) or _set_positives("many")(m),
        "invalid manifest",
    ),
    "huge sales": (_set_positives(10**30), "invalid manifest"),
    "negative sales": (_set_positives(-5), "invalid manifest"),
    "negative page sales": (
        lambda m: m["campaigns"]["big1"].update(page_positives={"fr": -1}),
        "invalid manifest",
    ),
    "page sales as a list": (
        lambda m: m["campaigns"]["big1"].update(page_positives=[3]),
        "invalid manifest",
    ),
    "overflowing float": (
        lambda m: m["campaigns"]["big1"].update(C=HUGE),
        "invalid manifest",
    ),
    "traversal in files": (_add_file("../../etc/passwd"), "is not a file of the version"),
    "absolute file name": (_add_file("/etc/passwd"), "is not a file of the version"),
    "hidden file": (_add_file(".hidden"), "is not a file of the version"),
    "traversal in a record": (
        lambda m: m["campaigns"]["big1"].update(file="../big1.joblib"),
        "is not a file of the version",
    ),
    "digest not hex": (
        lambda m: m["files"].update({"big1.joblib": "x" * 64}),
        "is not 64 hex digits",
    ),
    "not an object": (None, "invalid manifest"),
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_a_hostile_manifest_is_refused_with_a_clear_error(tmp_path: Path, attack: str) -> None:
    store, version = format1_store(tmp_path)
    directory = store.path_of(version)
    edit, message = HOSTILE[attack]
    if edit is None:  # the whole document is not an object
        (directory / "manifest.json").write_text("[1, 2, 3]")
    else:
        write_manifest_json(directory, edit)
    with pytest.raises(ModelLoadError, match=message):
        read_version(directory)
    with pytest.raises(ModelLoadError, match=message):
        ModelBank.from_directory(directory)
    assert any(message in p for p in verify(directory))


def test_a_listed_file_that_is_missing_is_named(tmp_path: Path) -> None:
    store, version = format1_store(tmp_path)
    directory = store.path_of(version)
    (directory / "thin1.joblib").unlink()
    assert any("thin1.joblib: listed in the manifest but missing" in p for p in verify(directory))
    with pytest.raises(ModelLoadError, match="thin1"):
        ModelBank.from_directory(directory)


def test_a_new_version_carries_format1_files_over_with_their_digests(tmp_path: Path) -> None:
    from clickrouter.catalogue import load_catalog
    from clickrouter.training.publish import Placement, publish

    store, old = format1_store(tmp_path)
    old_dir = store.path_of(old)
    records = store.manifest(old)["campaigns"]
    campaigns, _ = load_catalog(old_dir / "campaigns.json")
    placements = [
        Placement(cid, dict(records[cid]), source=old_dir / f"{cid}.joblib") for cid in records
    ]
    new = publish(store, campaigns, placements, {"parent": old})
    manifest = read_version(store.path_of(new)).manifest
    assert manifest is not None and manifest.format_version == FORMAT_VERSION
    listed = json.loads((FORMAT1 / "manifest.json").read_text())["files"]
    assert manifest.files["big1.joblib"] == listed["big1.joblib"]
    assert manifest.campaigns["big1"].positives == 271 and store.verify(new) == []
    with ModelBank.from_directory(store.path_of(new)) as bank:
        assert bank.campaign_ids == ["big1", "thin1"]


def test_sales_per_page_are_recorded_and_a_version_before_pages_has_none(
    tmp_path: Path,
) -> None:
    store, version = format1_store(tmp_path)
    old = read_version(store.path_of(version)).manifest
    assert old is not None
    assert all(record.page_positives == {} for record in old.campaigns.values())
    old.campaigns["big1"].page_positives = {"fr": 200, "form": 71}
    again = decode_manifest(encode_manifest(old))
    assert again.campaigns["big1"].page_positives == {"fr": 200, "form": 71}
    assert again.format_version == FORMAT_VERSION  # an added field: the format is unchanged
