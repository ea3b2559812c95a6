"""ModelStore: immutable versions, atomic CURRENT, manifest digests, writer lock, cleanup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clickrouter.errors import InvalidInput, NotFound
from clickrouter.modelstore import ModelStore, StoreBusy, resolve_model_dir, write_manifest


def _publish(store: ModelStore, content: str = "x") -> str:
    with store.staging() as (version, stage):
        (stage / "a.joblib").write_text(content)
        (stage / "campaigns.json").write_text("[]")
        write_manifest(stage, {"version": version})
    return version


def test_publish_then_switch_and_resolve(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert store.current() is None and store.versions() == []
    version = _publish(store)
    assert store.current() is None  # published is not live until switched
    store.set_current(version)
    assert resolve_model_dir(tmp_path) == (tmp_path / "versions" / version, version)
    assert store.manifest(version)["version"] == version
    assert set(store.manifest(version)["files"]) == {"a.joblib", "campaigns.json"}


def test_verify_names_a_corrupt_or_missing_file(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    version = _publish(store)
    assert store.verify(version) == []
    (store.path_of(version) / "a.joblib").write_text("tampered")
    (store.path_of(version) / "campaigns.json").unlink()
    problems = store.verify(version)
    assert any("a.joblib: sha256 differs" in p for p in problems)
    assert any("campaigns.json: listed in the manifest but missing" in p for p in problems)


def test_failed_staging_leaves_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(RuntimeError), store.staging() as (_, stage):
        (stage / "a.joblib").write_text("x")
        raise RuntimeError("fit crashed")
    assert store.versions() == [] and list((tmp_path / "tmp").iterdir()) == []


def test_prune_keeps_the_newest_and_the_live_one(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    versions = [_publish(store, str(i)) for i in range(4)]
    store.set_current(versions[0])
    assert store.prune(2) == versions[1:2]
    assert store.versions() == [versions[0], *versions[2:]]


def test_rollback_and_bad_names(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    old, new = _publish(store), _publish(store)
    store.set_current(new)
    store.rollback(old)
    assert store.current() == old
    with pytest.raises(NotFound):
        store.rollback("v-missing")
    with pytest.raises(InvalidInput):
        store.path_of("../etc")


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    probe = (
        "import sys; from clickrouter.modelstore import ModelStore\n"
        "with ModelStore(sys.argv[1]).writer_lock(): pass"
    )
    with store.writer_lock():
        with pytest.raises(StoreBusy), ModelStore(tmp_path).writer_lock():
            pass
        other = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True)
        assert other.returncode != 0 and b"StoreBusy" in other.stderr
    again = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True)
    assert again.returncode == 0


def test_clean_staging_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    (tmp_path / "tmp" / "v1.abc").mkdir(parents=True)
    (tmp_path / "tmp" / "v1.abc" / "a.joblib").write_text("half")
    (tmp_path / ".CURRENT.123.tmp").write_text("v1")
    assert sorted(store.clean_staging()) == [".CURRENT.123.tmp", "v1.abc"]
    assert list((tmp_path / "tmp").iterdir()) == []
