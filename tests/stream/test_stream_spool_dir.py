"""The event spool is private: a directory someone else could write (to forge events
for the broker, or delete the ones waiting) is refused, and the default is this
user's own state directory, never a fixed name in the shared temp directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from clickrouter.serving.engine.durability import default_spool_dir
from clickrouter.spool import Spool, UnsafeSpoolDir

NOBODY = 65534


def _no_broker() -> redis.Redis:
    # nothing listens on port 1: a spool that starts only journals, never forwards
    return redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def open_spool(root: Path) -> Spool:
    return Spool(root, "w1", _no_broker, "clicks", max_bytes=1 << 20, drain_seconds=0.1)


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_spool_others_may_write_is_refused(tmp_path: Path, mode: int) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    forged = root / "w0"  # an attacker's "orphan" spool, waiting to be adopted
    forged.mkdir()
    (forged / "w0-00000001.jsonl").write_text('{"type":"sale","click_id":"x"}\n')
    root.chmod(mode)
    with pytest.raises(UnsafeSpoolDir, match="writable by group or others"):
        open_spool(root)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_a_spool_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir(mode=0o700)
    os.chown(root, NOBODY, NOBODY)
    with pytest.raises(UnsafeSpoolDir, match=f"owned by uid {NOBODY}"):
        open_spool(root)


def test_a_spool_under_a_parent_others_may_write_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o777)  # not sticky: anyone could rename the spool away and plant another
    with pytest.raises(UnsafeSpoolDir, match=r"its parent .* is writable"):
        open_spool(parent / "spool")


def test_a_new_spool_is_created_private(tmp_path: Path) -> None:
    root = tmp_path / "new" / "spool"
    spool = open_spool(root)
    try:
        assert root.stat().st_mode & 0o777 == 0o700
    finally:
        spool.close()


def test_the_default_spool_is_this_users_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = default_spool_dir("127.0.0.1", 6379, "clicks")
    assert path == tmp_path / "state" / "clickrouter" / "spool" / "127.0.0.1_6379_clicks"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_spool_dir("h", 1, "s").is_relative_to(tmp_path / "home" / ".local" / "state")


def test_serve_refuses_an_unsafe_spool_dir_naming_the_option(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "campaigns.json").write_text("[]")
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o777)
    result = subprocess.run(
        [
            *[sys.executable, "-m", "clickrouter.cli", "serve", "--models", str(models)],
            *["--events", "redis://127.0.0.1:1/clicks", "--spool-dir", str(spool)],
            *["--cache-dir", str(tmp_path / "cache"), "--postback-auth", "off"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"--spool-dir {spool}" in result.stderr and "writable by group or others" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
