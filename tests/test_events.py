"""Event encoding: round trip, precise errors for bad lines, one line per click."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickrouter.events import (
    CanonicalProfile,
    ClickEvent,
    EventDecodeError,
    RawRequest,
    SaleEvent,
    TypedClickEvent,
    decode_event,
    encode_event,
    encode_events,
)

PROFILE = CanonicalProfile("FR", "iphone", "ios", "safari", "orange", 5, 6)
CLICK = ClickEvent(
    id="e1",
    click_id="k1",
    ts=1.5e9,
    profile=PROFILE,
    campaign_id="c1",
    landing_page="https://x/?k1",
    propensity=0.5,
    model_version="v1",
    raw={"country": "FRA"},
)


def test_click_and_sale_round_trip() -> None:
    sale = SaleEvent(id="s1", click_id="k1", ts=1.5e9 + 60, revenue=2.5)
    for event in (CLICK, sale):
        line = encode_event(event)
        assert line.endswith(b"\n")
        assert decode_event(line) == event


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b'{"type": "refund", "id": "x"}', "invalid event"),
        (b'{"type": "sale", "id": "s", "click_id": "k", "ts": "soon", "revenue": 1}', "ts"),
        (
            b'{"type": "sale", "id": "s", "click_id": "k", "ts": 1, "revenue": -1}',
            "negative revenue",
        ),
        (b'{"type": "sale", "id": "s", "ts": 1, "revenue": 1}', "click_id"),
    ],
)
def test_bad_lines_raise_with_a_reason(line: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError, match=reason):
        decode_event(line)


def test_propensity_must_be_a_probability() -> None:
    line = encode_event(CLICK).replace(b'"propensity":0.5', b'"propensity":0.0')
    with pytest.raises(EventDecodeError, match="propensity"):
        decode_event(line)


_text = st.text(min_size=1, max_size=20)
_profiles = st.builds(
    CanonicalProfile,
    country=_text,
    device=_text,
    os=_text,
    browser=_text,
    provider=_text,
    local_hour=st.integers(0, 23),
    local_weekday=st.integers(0, 6),
)
_events = st.one_of(
    st.builds(
        ClickEvent,
        id=_text,
        click_id=_text,
        ts=st.floats(0, 4e9),
        profile=_profiles,
        campaign_id=_text,
        landing_page=_text,
        propensity=st.floats(1e-9, 1.0),
        model_version=_text,
        raw=st.none() | st.dictionaries(_text, _text | st.integers(), max_size=4),
    ),
    st.builds(SaleEvent, id=_text, click_id=_text, ts=st.floats(0, 4e9), revenue=st.floats(0, 1e6)),
)


@given(_events)
def test_any_valid_event_round_trips(event: ClickEvent | SaleEvent) -> None:
    assert decode_event(encode_event(event)) == event


@given(st.binary(max_size=200))
def test_arbitrary_bytes_either_decode_or_raise_a_decode_error(line: bytes) -> None:
    try:
        event = decode_event(line)
    except EventDecodeError as exc:
        assert exc.status == 400 and str(exc)
    else:
        assert decode_event(encode_event(event)) == event


_maybe = st.none() | _text
_raw_requests = st.builds(
    RawRequest,
    click_id=_text,
    ts=st.none() | st.floats(0, 4e9) | _text,
    country=_maybe,
    tz=_maybe,
    device=_maybe,
    os=_maybe,
    browser=_maybe,
    user_agent=_maybe,
    provider=_maybe,
)


@given(
    st.builds(
        TypedClickEvent,
        id=_text,
        click_id=_text,
        ts=st.floats(0, 4e9),
        profile=_profiles,
        campaign_id=_text,
        landing_page=_text,
        propensity=st.floats(1e-9, 1.0),
        model_version=_text,
        raw=st.none() | _raw_requests,
    )
)
def test_a_typed_click_is_the_line_of_the_click_event_it_decodes_to(typed: TypedClickEvent) -> None:
    raw = None if typed.raw is None else msgspec.structs.asdict(typed.raw)
    if raw is not None:
        raw = {k: v for k, v in raw.items() if v is not None}  # absent, not null
    fields = {f: getattr(typed, f) for f in ClickEvent.__struct_fields__ if f != "raw"}
    click = ClickEvent(**fields, raw=raw)
    assert encode_events([typed]) == encode_event(click)
    assert decode_event(encode_events([typed])) == click


def test_a_pre_encoded_user_agent_is_copied_as_a_json_string() -> None:
    agent = msgspec.json.encode("Mozilla/5.0 (X11)")
    request = RawRequest("k1", 1.5e9, user_agent=msgspec.Raw(agent))
    typed = TypedClickEvent("e1", "k1", 1.5e9, PROFILE, "c1", "https://x/", 0.5, "v1", raw=request)
    decoded = decode_event(encode_events([typed]))
    assert isinstance(decoded, ClickEvent)
    assert decoded.raw == {"click_id": "k1", "ts": 1.5e9, "user_agent": "Mozilla/5.0 (X11)"}


def test_encode_events_joins_the_lines_of_encode_event() -> None:
    sale = SaleEvent(id="s1", click_id="k1", ts=1.5e9 + 60, revenue=2.5)
    assert encode_events([CLICK, sale, CLICK]) == b"".join(
        encode_event(e) for e in (CLICK, sale, CLICK)
    )
