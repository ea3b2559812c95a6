"""Hostile ``tz`` and ``ts`` values are refused naming the field, never looked up or kept."""

from __future__ import annotations

import os
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickrouter.errors import InvalidInput
from clickrouter.profile import extract_profile, parse_timestamp

TS = "2026-07-15T12:00:00Z"


def _tzdata_dir() -> Path:
    return Path(str(resources.files("tzdata").joinpath("zoneinfo")))


@pytest.mark.parametrize(
    "tz",
    [
        "Europe",  # a directory of the tz database
        "Europe/" + "x" * 300,
        "z" * 300,
        "../../etc/passwd",
        "/etc/passwd",
        "Europe/../Europe/Paris",
        "Mars/Olympus",
        "Europe/Paris\x00",
        3,
        ["Europe/Paris"],
    ],
)
def test_a_tz_that_names_no_zone_is_refused(tz: Any) -> None:
    with pytest.raises(InvalidInput, match="field 'tz'"):
        extract_profile({"country": "FR", "tz": tz, "ts": TS})


def test_a_tz_pointing_at_a_planted_zone_file_is_not_read(tmp_path: Path) -> None:
    # a valid TZif file outside the tz database, reachable by a relative and an
    # absolute path: zoneinfo would load it if the name reached the filesystem
    planted = tmp_path / "planted"
    shutil.copy(_tzdata_dir() / "Asia" / "Tokyo", planted)
    relative = os.path.relpath(planted, _tzdata_dir())
    for name in (relative, str(planted)):
        with pytest.raises(InvalidInput, match="field 'tz'"):
            extract_profile({"country": "FR", "tz": name, "ts": TS})


@settings(max_examples=200)
@given(st.text(max_size=40))
def test_any_tz_text_is_a_zone_or_refused(tz: str) -> None:
    try:
        profile = extract_profile({"tz": tz, "ts": TS})
    except InvalidInput as exc:
        assert "field 'tz'" in exc.message
    else:
        assert 0 <= profile["local_hour"] < 24


@pytest.mark.parametrize(
    "ts",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:30:00+01:00",  # before the first representable instant
        "1900-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:30:00+01:00",
        -1,
        "-1",
        -0.5,
    ],
)
def test_a_ts_before_1970_is_refused(ts: Any) -> None:
    with pytest.raises(InvalidInput, match="field 'ts'"):
        extract_profile({"country": "FR", "ts": ts})
    with pytest.raises(InvalidInput, match="field 'ts'"):
        parse_timestamp(ts)


def test_1970_itself_is_accepted() -> None:
    assert parse_timestamp("1970-01-01T00:00:00Z") == 0.0
    assert parse_timestamp(0) == 0.0


@pytest.mark.parametrize("ahead", [301.0, 86400.0, 10 * 365 * 86400.0])
def test_a_ts_further_ahead_than_the_skew_is_refused(ahead: float) -> None:
    future = time.time() + ahead
    for ts in (future, f"{future:.3f}", _rfc3339(future)):
        with pytest.raises(InvalidInput, match=r"field 'ts'.*ahead"):
            extract_profile({"country": "FR", "ts": ts}, max_ahead=300)
        # the check is the caller's: without max_ahead (training, simulations) it is kept
        assert 0 <= extract_profile({"country": "FR", "ts": ts})["local_hour"] < 24


def test_a_ts_within_the_skew_is_accepted() -> None:
    soon = time.time() + 200
    assert parse_timestamp(soon, max_ahead=300) == soon
    assert parse_timestamp("9999-12-31T23:59:59Z") > 0  # in range without max_ahead
    with pytest.raises(InvalidInput, match="ahead"):
        parse_timestamp("9999-12-31T23:59:59Z", max_ahead=300)


def test_a_ts_beside_a_given_local_time_is_still_checked() -> None:
    canonical = {"country": "FR", "local_hour": 3, "local_weekday": 2}
    assert extract_profile(canonical)["local_hour"] == 3
    with pytest.raises(InvalidInput, match="field 'ts'"):
        extract_profile({**canonical, "ts": "1900-01-01T00:00:00Z"})
    with pytest.raises(InvalidInput, match="field 'ts'"):
        extract_profile({**canonical, "ts": time.time() + 3600}, max_ahead=300)


def test_long_values_are_not_memoised_nor_scanned() -> None:
    from clickrouter import profile

    memo = profile._static_fields.cache_info().currsize
    looked_up = profile._country_lookup.cache_info().misses
    parsed = profile.parse_user_agent.cache_info().misses
    for i in range(20):
        huge = {
            "country": f"{i}" + "France " * 8000,
            "user_agent": f"{i} Mozilla/5.0 (Linux; Android 10) " * 1500,
            "ts": TS,
        }
        assert extract_profile(huge)["country"] == "unknown"
    # neither kept (20 x 100 KB here; 16,384 entries of 64 KB bodies in a server)
    assert profile._static_fields.cache_info().currsize == memo
    # nor searched: a fuzzy country search or the agent regexes would scan all of it
    assert profile._country_lookup.cache_info().misses == looked_up
    assert profile.parse_user_agent.cache_info().misses == parsed


def _rfc3339(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()
