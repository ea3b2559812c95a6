"""The memoised profile extraction gives exactly what the plain computation gives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickrouter.errors import InvalidInput
from clickrouter.profile import (
    _canonical_fields,
    extract_profile,
    local_hour_weekday,
    zone_for,
)

ZONES = sorted(available_timezones())
EPOCH_END = 253402300800  # 10000-01-01 UTC


def exact(epoch: float, zone: ZoneInfo) -> tuple[int, int]:
    moment = datetime.fromtimestamp(epoch, tz=zone)
    return moment.hour, moment.weekday()


@settings(max_examples=800, deadline=None)
@given(
    st.sampled_from(ZONES),
    st.one_of(
        st.integers(0, 4102444800),  # 1970 .. 2100: every zone's transitions
        st.floats(0, 4102444800, allow_nan=False),
        st.integers(EPOCH_END - 5 * 86400, EPOCH_END - 1),
    ),
)
def test_local_time_matches_datetime(zone_name: str, epoch: float) -> None:
    zone = ZoneInfo(zone_name)
    try:
        expected = exact(epoch, zone)
    except (OverflowError, ValueError):  # beyond year 9999 in that zone: still an error
        with pytest.raises((OverflowError, ValueError)):
            local_hour_weekday(epoch, zone)
        return
    assert local_hour_weekday(epoch, zone) == expected


@pytest.mark.parametrize(
    ("zone_name", "utc"),
    [
        ("Europe/Paris", "2026-03-29T01:00:00"),  # spring forward
        ("Europe/Paris", "2026-10-25T01:00:00"),  # fall back
        ("America/St_Johns", "2026-03-08T05:30:00"),  # a :30 zone's transition
        ("Australia/Lord_Howe", "2026-04-04T15:00:00"),  # a 30-minute DST shift
        ("Asia/Kathmandu", "1986-01-01T00:00:00"),  # +05:30 -> +05:45
    ],
)
@pytest.mark.parametrize("delta", [-3600, -901, -900, -1, -0.5, 0, 0.25, 1, 899, 900, 3600])
def test_local_time_around_transitions(zone_name: str, utc: str, delta: float) -> None:
    zone = ZoneInfo(zone_name)
    epoch = datetime.fromisoformat(utc).replace(tzinfo=UTC).timestamp() + delta
    assert local_hour_weekday(epoch, zone) == exact(epoch, zone)


@pytest.mark.parametrize("fraction", [0.9999994, 0.9999995, 0.9999996, 0.99999, 0.999999])
def test_fraction_that_rounds_into_the_next_second(fraction: float) -> None:
    zone = ZoneInfo("Europe/Paris")
    epoch = 1774659599 + fraction  # 23:59:59.99999x local: rounding may change hour and day
    assert local_hour_weekday(epoch, zone) == exact(epoch, zone)


def plain_extraction(raw: dict[str, Any]) -> dict[str, Any]:
    """What extract_profile computes, without any memo: the reference."""
    country, device, os_name, browser, provider = _canonical_fields(raw)
    hour, weekday = raw.get("local_hour"), raw.get("local_weekday")
    if not (type(hour) is int and type(weekday) is int and 0 <= hour < 24 and 0 <= weekday < 7):
        moment = datetime.fromtimestamp(raw["ts"], tz=zone_for(raw.get("tz"), country))
        hour, weekday = moment.hour, moment.weekday()
    return {
        "country": country,
        "device": device,
        "os": os_name,
        "browser": browser,
        "provider": provider,
        "local_hour": hour,
        "local_weekday": weekday,
    }


labels = st.one_of(
    st.none(),
    st.sampled_from(["FR", "fra", "250", "France", "US", "Narnia", "", " de ", "BR", "AU"]),
    st.sampled_from(["Mobile", " desktop ", "tablet", "Android", "iOS", "Chrome", "acme"]),
    st.integers(-5, 300),
    st.booleans(),
    st.floats(allow_nan=True),
)
agents = st.sampled_from(
    [
        None,
        "",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1",
        "curl/8.0",
    ]
)
zones = st.sampled_from([None, "", "Europe/Paris", "America/New_York", "Not/AZone", " Asia/Tokyo"])


@settings(max_examples=500, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "country": labels,
            "device": labels,
            "os": labels,
            "browser": labels,
            "provider": labels,
            "user_agent": agents,
            "tz": zones,
            "ts": st.one_of(st.integers(0, 4102444800), st.floats(0, 4102444800)),
            "local_hour": st.one_of(st.none(), st.integers(-1, 24), st.booleans()),
            "local_weekday": st.one_of(st.none(), st.integers(-1, 7)),
        }
    )
)
def test_memoised_extraction_matches_plain(raw: dict[str, Any]) -> None:
    expected = outcome(plain_extraction, raw)  # a profile, or the refusal of an unknown tz
    assert outcome(extract_profile, raw) == expected
    assert outcome(extract_profile, raw) == expected  # the second time from the memo


def outcome(extract: Any, raw: dict[str, Any]) -> Any:
    try:
        return extract(raw)
    except InvalidInput as exc:
        return exc.message
