"""The bank cache keeps its most recently used compiled versions and deletes the rest."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from clickrouter.config import Settings
from clickrouter.errors import InvalidInput
from clickrouter.serving.bank import ModelBank
from clickrouter.serving.cache import STALE_STAGING_SECONDS, directory_key, prune_cache
from clickrouter.serving.sample import make_sample_directory

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


def test_the_most_recently_used_entries_stay_and_the_memo_is_untouched(
    versions: list[Path], tmp_path: Path
):
    cache = tmp_path / "cache"
    keys = compile_all(versions, cache)  # v0 used last, v3 first
    ModelBank.from_directory(versions[3], cache_dir=cache).close()  # using v3 again
    assert sorted(prune_cache(cache, keep=2)) == sorted([keys[1], keys[2]])
    assert {p.parent.name for p in cache.glob("*/table.npy")} == {keys[0], keys[3]}
    assert any(p.name.startswith("memo-") for p in cache.iterdir())
    assert prune_cache(cache, keep=2) == []


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
