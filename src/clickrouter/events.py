"""Event schemas shared by the predictor, the simulator and the consumer.

Events are JSON lines, one object per line, tagged by ``type``:

* ``click``: an ad request and the decision taken for it (the chosen offer:
  campaign, landing page URL and ``landing_page_id``; the propensity of that
  offer under the logging policy and the model version that scored it). A
  line without ``landing_page_id`` is a click sent to the campaign's
  ``default`` page. ``profile`` holds the canonical fields the
  models saw; ``raw`` optionally keeps the request as it arrived.
* ``sale``: a postback for an earlier click (``click_id``), with its revenue.

``id`` is unique per event: consumers drop repeated ids, so a producer that
retries a write never doubles a record.

:class:`ClickEvent` is a click as the log holds it (``raw`` free-form, as it
arrived). A producer that knows the request as columns (the simulator) builds
a :class:`TypedClickEvent` instead: the same fields, ``raw`` a
:class:`RawRequest` struct, encoded to the same line, and cheaper to build
in bulk than the dict a :class:`ClickEvent` would need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from clickrouter.catalogue import DEFAULT_PAGE_ID
from clickrouter.errors import InvalidInput


class CanonicalProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The canonical fields of one request (see :mod:`clickrouter.profile`)."""

    country: str
    device: str
    os: str
    browser: str
    provider: str
    local_hour: int
    local_weekday: int

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__struct_fields__}


class _Click(msgspec.Struct, frozen=True):
    """The fields every click line carries, in line order; ``raw`` follows them."""

    id: str
    click_id: str
    ts: float
    profile: CanonicalProfile
    campaign_id: str
    landing_page: str
    propensity: float
    model_version: str
    landing_page_id: str = DEFAULT_PAGE_ID


class ClickEvent(_Click, tag="click", tag_field="type", frozen=True):
    """A decision: request ``click_id`` at ``ts`` was sent to ``campaign_id``."""

    raw: dict[str, Any] | None = None


class RawRequest(msgspec.Struct, omit_defaults=True, gc=False):
    """The request fields a producer logs in ``raw``; a None field is left out of the line.

    ``user_agent`` may be pre-encoded JSON (:class:`msgspec.Raw`), copied as is.
    """

    click_id: str
    ts: Any = None
    country: str | None = None
    tz: str | None = None
    device: str | None = None
    os: str | None = None
    browser: str | None = None
    user_agent: str | msgspec.Raw | None = None
    provider: str | None = None


class TypedClickEvent(_Click, tag="click", tag_field="type", frozen=True, gc=False):
    """A :class:`ClickEvent` built from known request fields: same tag, fields and line.

    Neither it nor its ``raw`` is tracked by the garbage collector (they hold
    no container that could close a cycle), so a block of them is built
    without collection passes. Decoding its line gives a :class:`ClickEvent`.
    """

    raw: RawRequest | None = None


class SaleEvent(msgspec.Struct, tag="sale", tag_field="type", frozen=True):
    """A sale postback for ``click_id`` at ``ts`` worth ``revenue``."""

    id: str
    click_id: str
    ts: float
    revenue: float


Event = ClickEvent | SaleEvent

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


class EventDecodeError(InvalidInput):
    """A line that is not a valid event; ``reason`` says why."""


def encode_event(event: Event) -> bytes:
    """One event as a JSON line (with the trailing newline)."""
    return _encoder.encode(event) + b"\n"


def encode_events(events: Sequence[Event | TypedClickEvent]) -> bytes:
    """Events as JSON lines, each with its newline: ``encode_event`` of each, joined."""
    return _encoder.encode_lines(events)


def decode_event(line: bytes | str) -> Event:
    """Parse one JSON line into a typed event, validating every field."""
    try:
        event = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise EventDecodeError(f"invalid event: {exc}") from None
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"malformed JSON: {exc}") from None
    _check_ranges(event)
    return event


def _check_ranges(event: Event) -> None:
    if isinstance(event, ClickEvent):
        if not 0.0 < event.propensity <= 1.0:
            raise EventDecodeError(f"invalid event: propensity {event.propensity!r} not in (0, 1]")
        if not 0 <= event.profile.local_hour < 24 or not 0 <= event.profile.local_weekday < 7:
            raise EventDecodeError("invalid event: local_hour/local_weekday out of range")
    elif event.revenue < 0:
        raise EventDecodeError(f"invalid event: negative revenue {event.revenue!r}")
