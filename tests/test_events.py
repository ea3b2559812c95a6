"""Event encoding: round trip and precise errors for bad lines."""

from __future__ import annotations

import pytest

from clickrouter.events import (
    CanonicalProfile,
    ClickEvent,
    EventDecodeError,
    SaleEvent,
    decode_event,
    encode_event,
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
