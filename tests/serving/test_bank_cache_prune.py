"""The bank cache keeps its most recently used compiled versions and deletes the rest.

Its compile memo keeps what the compiles since the oldest kept version used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from clickrouter.config import Settings
from clickrouter.errors import InvalidInput
from clickrouter.serving.bank import ModelBank
from clickrouter.serving.cache import STALE_STAGING_SECONDS, directory_key, prune_cache
from clickrouter.serving.memo import prune_memo
from reference.sample_models import make_sample_directory

PROFILE = {"country": "FR", "os": "ios", "device": "iphone", "local_hour": 20}


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("versions")
    return [make_sample_directory(root / f"v{i}", 12, seed=i) for i in range(4)]


def compile_all(versions: list[Path], cache: Path) -> list[str]:
    """Compile every version into ``cache``, the first one the most recently used; their keys."""
    for age, directory in enumerate(versions, start=1):
        ModelBank.from_directory(directory, cache_dir=cache).close()
        entry = cache / directory_key(directory)
        os.utime(entry, (time.time() - 100 * age, time.time() - 100 * age))
    return [directory_key(d) for d in versions]


def memo_entries(cache: Path, directory: Path) -> list[Path]:
    """The memo files of a version's models."""
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.glob("*.joblib")}
    return [p for p in cache.glob("memo-*/*.memo") if p.name.split(".")[0] in digests]


def date_compile(cache: Path, directory: Path, at: float) -> None:
    """Make a version's compile have started at ``at``, its models' memo entries used then."""
    meta = cache / directory_key(directory) / "meta.json"
    fields = json.loads(meta.read_bytes())
    meta.write_text(json.dumps({**fields, "memo_since": at}))
    for path in memo_entries(cache, directory):
        os.utime(path, (at, at))


def test_the_most_recently_used_entries_stay(versions: list[Path], tmp_path: Path):
    cache = tmp_path / "cache"
    keys = compile_all(versions, cache)  # v0 used last, v3 first
    ModelBank.from_directory(versions[3], cache_dir=cache).close()  # using v3 again
    assert sorted(prune_cache(cache, keep=2)) == sorted([keys[1], keys[2]])
    assert {p.parent.name for p in cache.glob("*/table.npy")} == {keys[0], keys[3]}
    assert prune_cache(cache, keep=2) == []


def test_the_memo_keeps_what_compiles_since_the_oldest_kept_one_used(
    versions: list[Path], tmp_path: Path
):
    cache = tmp_path / "cache"
    compile_all(versions, cache)  # v3 compiled first ... v0 last
    now = time.time()
    for age, directory in enumerate(versions, start=1):
        date_compile(cache, directory, now - 1000 * age)
    assert all(memo_entries(cache, d) for d in versions)
    prune_cache(cache, keep=2)  # keeps v0 and v1: memo entries used since v1's compile
    assert memo_entries(cache, versions[2]) == memo_entries(cache, versions[3]) == []
    assert len(memo_entries(cache, versions[0])) == len(memo_entries(cache, versions[1])) == 12
    shutil.rmtree(cache / directory_key(versions[1]))  # v1 is compiled again from its memo,
    again = ModelBank.from_directory(versions[1], cache_dir=cache)  # which marks it used
    assert again.assembly_.reused == 12
    again.close()
    assert all(p.stat().st_mtime > now - 100 for p in memo_entries(cache, versions[1]))
    redo = ModelBank.from_directory(versions[3], cache_dir=cache)  # its memo is gone: compiled
    assert redo.assembly_.reused == 0 and len(memo_entries(cache, versions[3])) == 12
    redo.close()


def test_an_entry_of_unknown_compile_time_keeps_the_whole_memo(
    versions: list[Path], tmp_path: Path
):
    cache = tmp_path / "cache"
    compile_all(versions[:2], cache)
    long_ago = time.time() - 10_000
    for directory in versions[:2]:
        date_compile(cache, directory, long_ago)
    meta = cache / directory_key(versions[1]) / "meta.json"  # written before memo_since existed
    meta.write_text(
        json.dumps({k: v for k, v in json.loads(meta.read_bytes()).items() if k != "memo_since"})
    )
    prune_cache(cache, keep=2)
    assert len(memo_entries(cache, versions[0])) == len(memo_entries(cache, versions[1])) == 12


def test_prune_memo_covers_every_environment_and_dead_writers(tmp_path: Path):
    old, fresh = time.time() - 1000, time.time()
    names = ["memo-sklearn-0.1/aa.joblib.memo", "memo-now/bb.joblib.memo", "memo-now/.memo.x1"]
    for name in names:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"entry")
        os.utime(tmp_path / name, (old, old))
    (tmp_path / "memo-now/cc.joblib.memo").write_bytes(b"entry")  # used just now
    (tmp_path / "memo-now/layout-ab.values").write_bytes(b"values")
    os.utime(tmp_path / "memo-now/layout-ab.values", (old, old))
    assert prune_memo(tmp_path, used_before=fresh - 10) == 3
    left = sorted(p.name for p in tmp_path.glob("memo-*/*"))
    assert left == ["cc.joblib.memo", "layout-ab.values"]


def test_a_bank_mapped_from_a_deleted_entry_keeps_scoring(versions: list[Path], tmp_path: Path):
    cache = tmp_path / "cache"
    compile_all(versions[:2], cache)
    bank = ModelBank.from_directory(versions[1], cache_dir=cache)
    before = bank.predict_proba([PROFILE])
    long_ago = time.time() - 3600  # v1 mapped, but last loaded before v0 (file times are
    os.utime(cache / directory_key(versions[1]), (long_ago, long_ago))  # tick-coarse)
    assert prune_cache(cache, keep=1) == [directory_key(versions[1])]
    assert not (cache / directory_key(versions[1])).exists()
    np.testing.assert_array_equal(bank.predict_proba([PROFILE]), before)  # pages stay mapped
    bank.close()
    again = ModelBank.from_directory(versions[1], cache_dir=cache)  # compiled once more
    np.testing.assert_array_equal(again.predict_proba([PROFILE]), before)
    again.close()


def test_only_stale_staging_directories_are_deleted(tmp_path: Path):
    cache = tmp_path / "cache"
    stale, fresh = cache / ".abc.dead", cache / ".def.writing"
    for staging in (stale, fresh):
        staging.mkdir(parents=True)
        (staging / "table.npy").write_bytes(b"partial")
    old = time.time() - STALE_STAGING_SECONDS - 60
    os.utime(stale, (old, old))
    assert prune_cache(cache, keep=1) == []
    assert not stale.exists() and fresh.exists()


def test_nothing_to_prune_and_bad_keep_values(tmp_path: Path):
    assert prune_cache(tmp_path / "no-cache-yet", keep=3) == []
    with pytest.raises(ValueError, match="keep"):
        prune_cache(tmp_path, keep=0)
    with pytest.raises(InvalidInput, match="bank_cache_keep"):
        Settings.from_env({"CLICKROUTER_BANK_CACHE_KEEP": "0"})
