"""Profile extraction: country codes, local time (DST), user agents, bad input."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pycountry
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickrouter.errors import InvalidInput
from clickrouter.profile import (
    CANONICAL_FIELDS,
    UNKNOWN,
    canonical_country,
    country_zone_name,
    extract_profile,
    parse_timestamp,
    profile_frame,
)

ANDROID_UA = (
    "Mozilla/5.0 (Linux; Android 13; SM-G991B) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/112.0.0.0 Mobile Safari/537.36"
)
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1"
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("FR", "FR"),
        ("fr", "FR"),
        ("FRA", "FR"),
        ("250", "FR"),
        (250, "FR"),
        ("France", "FR"),
        ("76", "BR"),
        ("076", "BR"),
        ("united states", "US"),
        ("Russia", "RU"),
        (" de ", "DE"),
        ("Narnia", UNKNOWN),
        ("", UNKNOWN),
        (None, UNKNOWN),
        (True, UNKNOWN),
        ("XX", UNKNOWN),
    ],
)
def test_country_forms_map_to_alpha2(given: Any, expected: str) -> None:
    assert canonical_country(given) == expected


@given(st.sampled_from(list(pycountry.countries)))
def test_every_iso_country_round_trips_through_each_code_form(country: Any) -> None:
    for form in (country.alpha_2, country.alpha_3, country.numeric, country.name):
        assert canonical_country(form) == country.alpha_2


def test_local_time_follows_the_country_zone_across_dst() -> None:
    winter = extract_profile({"country": "FR", "ts": "2026-01-15T12:00:00Z"})
    summer = extract_profile({"country": "FR", "ts": "2026-07-15T12:00:00Z"})
    assert (winter["local_hour"], summer["local_hour"]) == (13, 14)  # CET, then CEST
    assert winter["local_weekday"] == 3  # Thursday


def test_explicit_tz_overrides_country_and_unknown_tz_is_refused() -> None:
    ts = "2026-07-15T12:00:00Z"
    assert extract_profile({"country": "FR", "tz": "America/New_York", "ts": ts})["local_hour"] == 8
    assert (
        extract_profile({"country": "FR", "tz": " america/new_york ", "ts": ts})["local_hour"] == 8
    )
    assert extract_profile({"country": "FR", "tz": " ", "ts": ts})["local_hour"] == 14  # absent
    with pytest.raises(InvalidInput, match="field 'tz'"):
        extract_profile({"country": "FR", "tz": "Mars/Olympus", "ts": ts})


def test_local_weekday_changes_at_local_midnight() -> None:
    # 23:30 UTC on a Sunday is Monday morning in Tokyo
    profile = extract_profile({"country": "JP", "ts": "2026-11-22T23:30:00Z"})
    assert (profile["local_hour"], profile["local_weekday"]) == (8, 0)


def test_populous_zone_is_chosen_for_multi_zone_countries() -> None:
    assert country_zone_name("RU") == "Europe/Moscow"
    assert country_zone_name("US") == "America/New_York"
    assert country_zone_name(UNKNOWN) == "UTC"


def test_epoch_and_rfc3339_timestamps_agree() -> None:
    epoch = datetime(2026, 3, 1, 10, 30, tzinfo=UTC).timestamp()
    assert parse_timestamp("2026-03-01T10:30:00Z") == epoch
    assert parse_timestamp("2026-03-01T11:30:00+01:00") == epoch
    assert parse_timestamp(epoch) == epoch
    assert parse_timestamp(str(int(epoch))) == epoch


@pytest.mark.parametrize(
    "bad", ["yesterday", "2026-13-01", -5, 1e20, 10**400, float("nan"), [], True]
)
def test_unreadable_timestamp_is_invalid_input_naming_the_field(bad: Any) -> None:
    with pytest.raises(InvalidInput, match="field 'ts'"):
        extract_profile({"ts": bad})


def test_missing_ts_means_now() -> None:
    now = datetime(2026, 6, 1, 6, 0, tzinfo=UTC).timestamp()
    assert extract_profile({"country": "GB"}, now=now)["local_hour"] == 7  # BST


def test_user_agent_fills_only_missing_fields() -> None:
    parsed = extract_profile({"user_agent": ANDROID_UA})
    assert (parsed["os"], parsed["browser"]) == ("android", "chrome mobile")
    assert parsed["device"] == "samsung sm-g991b"
    explicit = extract_profile({"user_agent": IPHONE_UA, "os": "iOS", "browser": "Safari X"})
    assert (explicit["os"], explicit["browser"], explicit["device"]) == (
        "ios",
        "safari x",
        "iphone",
    )


def test_missing_everything_maps_to_unknown_slots() -> None:
    profile = extract_profile({})
    assert set(profile) == set(CANONICAL_FIELDS)
    assert all(profile[f] == UNKNOWN for f in ("country", "device", "os", "browser", "provider"))


_junk = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.floats(), st.booleans())


@settings(max_examples=300)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            f: _junk for f in ("country", "device", "os", "browser", "provider", "user_agent")
        },
    )
)
def test_categorical_junk_never_raises_and_extraction_is_idempotent(raw: dict[str, Any]) -> None:
    profile = extract_profile({**raw, "ts": 1_780_000_000})
    assert 0 <= profile["local_hour"] < 24 and 0 <= profile["local_weekday"] < 7
    assert extract_profile(profile) == profile


def test_local_time_matches_zoneinfo_directly() -> None:
    ts = 1_790_000_000
    local = datetime.fromtimestamp(ts, tz=ZoneInfo("Asia/Kolkata"))
    profile = extract_profile({"country": "IND", "ts": ts})
    assert (profile["local_hour"], profile["local_weekday"]) == (local.hour, local.weekday())


def test_profile_frame_has_canonical_columns_and_dtypes() -> None:
    frame = profile_frame([extract_profile({"country": "DE", "ts": 0})])
    assert list(frame.columns) == list(CANONICAL_FIELDS)
    assert str(frame["local_hour"].dtype) == "int64"
    assert frame.loc[0, "country"] == "DE"


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.timezones()
    )
)
def test_rfc3339_text_and_epoch_parse_to_the_same_instant(moment: datetime) -> None:
    epoch = moment.timestamp()
    assert parse_timestamp(moment.isoformat()) == pytest.approx(epoch, abs=1e-6)
    assert parse_timestamp(epoch) == epoch
    local = datetime.fromtimestamp(epoch, tz=ZoneInfo("Europe/Paris"))
    profile = extract_profile({"ts": moment.isoformat(), "tz": "Europe/Paris"})
    assert (profile["local_hour"], profile["local_weekday"]) == (local.hour, local.weekday())
