"""The compiled-bank cache is no way in: private, authenticated, recompiled when tampered.

Each tampering is done on the real cache files a real compile wrote (bytes of
the table flipped, a landing page swapped in ``meta.json``, a memo entry's
weights changed); the next load must detect it, compile again and serve exactly
what a fresh compile serves. A cache directory someone else could write is
refused with a message, by the library and by ``clickrouter serve``.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import msgspec
import numpy as np
import pytest

from clickrouter import ModelBank
from clickrouter.cli import main
from clickrouter.errors import ModelLoadError
from clickrouter.serving.cache import directory_key
from clickrouter.serving.cachedir import SECRET, UnsafeCacheDir, user_cache_dir
from clickrouter.serving.memo import CompileMemo
from fakes import fitted_pipeline, write_model_directory
from reference.sample_models import make_sample_directory, random_profiles

NOBODY = 65534
ATTACKER = "https://attacker.example/{click_id}"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_directory(tmp_path_factory.mktemp("trust") / "v1", 12, seed=3)


def scores(bank: ModelBank) -> np.ndarray:
    return bank.predict_proba(random_profiles(np.random.default_rng(4), 50))


def fresh(models: Path) -> tuple[np.ndarray, list[str]]:
    with ModelBank.from_directory(models) as bank:
        return scores(bank), [c.landing_page for c in bank.campaigns]


def test_a_new_cache_is_private(models: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ModelBank.from_directory(models, cache_dir=cache).close()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / SECRET).stat().st_mode) == 0o600
    memo_dirs = list(cache.glob("memo-*"))
    assert memo_dirs and all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in memo_dirs)


def test_flipped_table_bytes_are_detected_and_recompiled(
    models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    expected, _ = fresh(models)
    ModelBank.from_directory(models, cache_dir=cache).close()
    table = cache / directory_key(models) / "table.npy"
    data = bytearray(table.read_bytes())
    data[-8:] = np.float64(1e-300).tobytes()  # the last campaign's weight: it would always win
    table.write_bytes(bytes(data))
    with (
        caplog.at_level(logging.WARNING),
        ModelBank.from_directory(models, cache_dir=cache) as bank,
    ):
        assert not isinstance(bank.assembly_.table, np.memmap)  # compiled again, not mapped
        np.testing.assert_array_equal(scores(bank), expected)
    assert "table.npy differs" in caplog.text
    with ModelBank.from_directory(models, cache_dir=cache) as again:  # the new entry is good
        assert isinstance(again.assembly_.table, np.memmap)
        np.testing.assert_array_equal(scores(again), expected)


def test_a_swapped_landing_page_is_detected_and_never_served(
    models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    _, pages = fresh(models)
    ModelBank.from_directory(models, cache_dir=cache).close()
    meta_path = cache / directory_key(models) / "meta.json"
    meta = json.loads(meta_path.read_bytes())
    for campaign in meta["campaigns"]:
        campaign["landing_page"] = ATTACKER
    meta_path.write_bytes(msgspec.json.encode(meta))
    with (
        caplog.at_level(logging.WARNING),
        ModelBank.from_directory(models, cache_dir=cache) as bank,
    ):
        assert [c.landing_page for c in bank.campaigns] == pages
        assert bank.decide({"country": "FR"}).landing_page != ATTACKER
    assert "does not match its MAC" in caplog.text


def test_an_entry_copied_under_another_key_is_refused(models: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    other = write_model_directory(tmp_path / "other", {"x": fitted_pipeline(1)})
    ModelBank.from_directory(models, cache_dir=cache).close()
    ModelBank.from_directory(other, cache_dir=cache).close()
    target = cache / directory_key(other)
    for name in ("meta.json", "meta.mac", "table.npy"):  # a valid entry, of another version
        (target / name).write_bytes((cache / directory_key(models) / name).read_bytes())
    with ModelBank.from_directory(other, cache_dir=cache) as bank:
        assert bank.campaign_ids == ["x"]


def test_a_tampered_memo_entry_is_ignored(
    models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    expected, _ = fresh(models)
    ModelBank.from_directory(models, cache_dir=cache).close()
    entries = sorted(cache.glob("memo-*/*.memo"))
    assert len(entries) == 12
    memo = CompileMemo(cache)
    for path in entries:  # every weight inflated: every campaign would look certain
        data = bytearray(path.read_bytes())
        payload = msgspec.msgpack.decode(bytes(data[:-32]))
        for weights in payload["fields"].values():
            weights["weights"] = np.full(len(weights["weights"]) // 8, 50.0).tobytes()
        path.write_bytes(msgspec.msgpack.encode(payload) + bytes(data[-32:]))
        with caplog.at_level(logging.WARNING):
            assert memo.get(path.name.split(".")[0], ".joblib") is None
        assert "its MAC does not match" in caplog.text and not path.exists()
    for entry in cache.glob("[0-9a-f]" * 32):  # the version compiles again, from the memo
        for file in entry.iterdir():
            file.unlink()
        entry.rmdir()
    with ModelBank.from_directory(models, cache_dir=cache) as bank:
        assert bank.assembly_.reused == 0  # every model probed again from its file
        np.testing.assert_array_equal(scores(bank), expected)
    assert len([p for p in entries if memo.get(p.name.split(".")[0], ".joblib")]) == 12


def test_no_pickle_is_read_from_the_cache(models: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ModelBank.from_directory(models, cache_dir=cache).close()
    table = cache / directory_key(models) / "table.npy"
    np.save(table, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # an object array
    with ModelBank.from_directory(models, cache_dir=cache) as bank:
        assert bank.assembly_.table.dtype == np.float64


@pytest.mark.parametrize("how", ["world-writable", "group-writable", "another uid"])
def test_a_cache_others_could_write_is_refused(models: Path, tmp_path: Path, how: str) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    if how == "another uid":
        os.chown(cache, NOBODY, NOBODY)
    else:
        os.chmod(cache, 0o777 if how == "world-writable" else 0o770)
    with pytest.raises(UnsafeCacheDir) as info:
        ModelBank.from_directory(models, cache_dir=cache)
    expected = f"owned by uid {NOBODY}" if how == "another uid" else "writable by group or others"
    assert expected in info.value.message and str(cache) in info.value.message
    assert isinstance(info.value, ModelLoadError)  # a reload is rejected, the old bank serves
    assert not (cache / SECRET).exists()


def test_a_cache_whose_parent_others_may_write_is_refused(models: Path, tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, 0o777)  # not sticky: anyone could rename the cache away and plant theirs
    with pytest.raises(UnsafeCacheDir, match=r"its parent .*shared is writable"):
        ModelBank.from_directory(models, cache_dir=parent / "cache")
    os.chmod(parent, 0o1777)  # sticky, as /tmp: others cannot rename what is ours
    ModelBank.from_directory(models, cache_dir=parent / "cache").close()


def test_serve_refuses_an_unsafe_cache_dir_naming_the_option(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    code = main(["serve", "--models", str(models), "--cache-dir", str(cache), "--port", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--cache-dir {cache}" in err and "chmod 700" in err and "Traceback" not in err


def test_the_default_cache_is_the_users_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = user_cache_dir()
    assert cache == tmp_path / "xdg" / "clickrouter" / "bank"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    os.chmod(tmp_path / "xdg", 0o777)  # a home others may write: a fresh private temp dir
    fallback = user_cache_dir()
    assert fallback != cache and stat.S_IMODE(fallback.stat().st_mode) == 0o700
    fallback.rmdir()


def test_a_cache_hit_does_not_bypass_the_trust_of_generic_models(tmp_path: Path) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from clickrouter.profile import profile_frame
    from fakes import random_profiles as fake_profiles

    rng = np.random.default_rng(0)
    frame = profile_frame(fake_profiles(rng, 150))
    pre = make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["country"]))
    forest = make_pipeline(pre, RandomForestClassifier(n_estimators=2, random_state=0))
    forest.fit(frame, rng.random(len(frame)) < 0.3)
    root = write_model_directory(tmp_path / "models", {"a": fitted_pipeline(0), "f": forest})
    cache = tmp_path / "cache"
    with ModelBank.from_directory(root, cache_dir=cache, workers=1) as bank:
        assert bank.n_generic == 1  # the forest is unpickled by the worker pool
    os.chmod(root, 0o777)  # now anyone could swap the forest's file
    with pytest.raises(ModelLoadError) as info:
        ModelBank.from_directory(root, cache_dir=cache, workers=1)
    assert any("f.joblib: refusing to unpickle" in p for p in info.value.problems)


def test_an_entry_missing_its_mac_is_replaced(models: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ModelBank.from_directory(models, cache_dir=cache).close()
    (cache / directory_key(models) / "meta.mac").unlink()
    ModelBank.from_directory(models, cache_dir=cache).close()  # refused, compiled, stored
    assert (cache / directory_key(models) / "meta.mac").is_file()
    with ModelBank.from_directory(models, cache_dir=cache) as bank:
        assert isinstance(bank.assembly_.table, np.memmap)
