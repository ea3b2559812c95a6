"""Decoded events of one chunk as columns: the input of the batch attribution.

``msgspec`` turns the chunk into event structs in one call; this module then
reads each field once per column (a list comprehension each, C-speed loops),
checks the value ranges :func:`clickrouter.events.decode_event` checks with
numpy over whole columns, and builds the clicks' Arrow columns once, so that
labelled records later are ``take`` s of those columns instead of per-record
Python objects.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter, not_

import msgspec
import numpy as np
import pyarrow as pa

from clickrouter.datastore import RECORD_SCHEMA
from clickrouter.events import ClickEvent, Event, SaleEvent

# the click's part of a record, plus the event id (kept for deduplication state)
LABEL_COLUMNS = ("label", "revenue", "sale_ts")
CLICK_SCHEMA = pa.schema(
    [pa.field("id", pa.string(), nullable=False)]
    + [f for f in RECORD_SCHEMA if f.name not in LABEL_COLUMNS]
)
_PROFILE_STRINGS = ("country", "device", "os", "browser", "provider")
_ID, _CLICK_ID, _TS, _PROFILE = map(attrgetter, ("id", "click_id", "ts", "profile"))
_CAMPAIGN, _PROPENSITY, _MODEL_VERSION, _REVENUE, _PAGE = map(
    attrgetter, ("campaign_id", "propensity", "model_version", "revenue", "landing_page_id")
)
_HOUR, _WEEKDAY = attrgetter("local_hour"), attrgetter("local_weekday")
_event_decoder = msgspec.json.Decoder(Event)


@dataclass(slots=True)
class EventBatch:
    """Valid events of one chunk, in arrival order, with column views.

    ``ts``/``ids``/``click_ids`` cover every event; ``clicks`` (CLICK_SCHEMA)
    has one row per click event, ``click_pos[r]`` being that click's position.
    """

    events: list[Event] | None  # None: decoded elsewhere; see :meth:`event`
    raws: Sequence[bytes]  # the events' lines (a BatchLines: cut out when asked)
    ts: list[float]
    ids: list[str]
    click_ids: list[str]
    is_click: list[bool]
    click_pos: np.ndarray  # shape (n_clicks,), int64
    clicks: pa.Table
    repeated_ids: set[str]  # event ids found more than once in the batch
    repeated_click_ids: set[str]  # click ids found more than once (any event type)
    clicks_ipc: bytes | None = None  # ``clicks`` as Arrow IPC, when it came so

    def __len__(self) -> int:
        return len(self.raws)

    def event(self, j: int) -> Event:
        """Event ``j`` (decoded again from its line when the batch came from a
        decode worker: only the few events the join handles one by one)."""
        if self.events is None:
            return _event_decoder.decode(self.raws[j])
        return self.events[j]


Problem = tuple[int, str]  # (index into the events given, reason)


def build_batch(
    events: list[Event],
    raws: Sequence[bytes],
    *,
    campaign_ok: Callable[[str], bool],
    invalid: Callable[[Event], str | None],
) -> tuple[EventBatch, list[Problem]]:
    """Columns of ``events``; events failing a range check are left out and
    returned as ``(index, reason)`` (``invalid`` names the reason, as the
    line-by-line path would)."""
    is_click = [e.__class__ is ClickEvent for e in events]
    clicks: list[ClickEvent] = list(compress(events, is_click))  # type: ignore[arg-type]
    batch = _columns(events, raws, is_click, clicks, campaign_ok)
    if batch is not None:
        return batch, []
    bad = [i for i, e in enumerate(events) if not _in_range(e, campaign_ok)]
    problems = [(i, invalid(events[i]) or "invalid event") for i in bad]
    drop = set(bad)
    keep = [i for i in range(len(events)) if i not in drop]
    batch, _ = build_batch(
        [events[i] for i in keep], [raws[i] for i in keep], campaign_ok=campaign_ok, invalid=invalid
    )
    return batch, problems


def _in_range(event: Event, campaign_ok: Callable[[str], bool]) -> bool:
    if isinstance(event, SaleEvent):
        return not event.revenue < 0
    p = event.profile
    return (
        0.0 < event.propensity <= 1.0
        and 0 <= p.local_hour < 24
        and 0 <= p.local_weekday < 7
        and campaign_ok(event.campaign_id)
    )


def _columns(
    events: list[Event],
    raws: Sequence[bytes],
    is_click: list[bool],
    clicks: list[ClickEvent],
    campaign_ok: Callable[[str], bool],
) -> EventBatch | None:
    """The batch, or None when some event fails a range check (found in one
    numpy pass per column; the caller then names them one by one)."""
    profiles = list(map(_PROFILE, clicks))
    propensity = np.array(list(map(_PROPENSITY, clicks)), dtype=np.float64)
    try:
        hour = np.array(list(map(_HOUR, profiles)), dtype=np.int64)
        weekday = np.array(list(map(_WEEKDAY, profiles)), dtype=np.int64)
    except OverflowError:  # an int beyond 64 bits
        return None
    campaigns = list(map(_CAMPAIGN, clicks))
    sales: list[SaleEvent] = list(compress(events, map(not_, is_click)))  # type: ignore[arg-type]
    revenue = np.array(list(map(_REVENUE, sales)), dtype=np.float64)
    ok = (propensity > 0.0) & (propensity <= 1.0) & (hour >= 0) & (hour < 24)
    ok &= (weekday >= 0) & (weekday < 7)
    if not ok.all() or (revenue < 0).any() or not all(map(campaign_ok, set(campaigns))):
        return None
    ids = list(map(_ID, events))
    click_ids = list(map(_CLICK_ID, events))
    ts = list(map(_TS, events))
    arrays: dict[str, pa.Array] = {
        "id": pa.array(list(compress(ids, is_click)), pa.string()),
        "click_id": pa.array(list(compress(click_ids, is_click)), pa.string()),
        "campaign_id": pa.array(campaigns, pa.string()),
        "ts": pa.array(list(compress(ts, is_click)), pa.float64()),
        "local_hour": pa.array(hour.astype(np.int8)),
        "local_weekday": pa.array(weekday.astype(np.int8)),
        "propensity": pa.array(propensity),
        "model_version": pa.array(list(map(_MODEL_VERSION, clicks)), pa.string()),
        "landing_page_id": pa.array(list(map(_PAGE, clicks)), pa.string()),
    }
    for name in _PROFILE_STRINGS:
        arrays[name] = pa.array(list(map(attrgetter(name), profiles)), pa.string())
    table = pa.Table.from_arrays([arrays[n] for n in CLICK_SCHEMA.names], schema=CLICK_SCHEMA)
    click_pos = np.flatnonzero(np.array(is_click, dtype=bool))
    return EventBatch(
        events,
        raws,
        ts,
        ids,
        click_ids,
        is_click,
        click_pos,
        table,
        repeated(ids),
        repeated(click_ids),
    )


def repeated(keys: list[str]) -> set[str]:
    """The keys found more than once (computed where the batch is decoded, so
    in the decode worker when there is one). Counter counts in C; most of the
    cost is hashing fresh strings, which later set operations then reuse."""
    counts = Counter(keys)
    if len(counts) == len(keys):
        return set()
    return {key for key, n in counts.items() if n > 1}
