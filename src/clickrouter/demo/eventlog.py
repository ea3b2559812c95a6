"""Reading the predictor's event log back: incrementally (live view) or whole (report).

The event log is the source of truth of what the system did: every decision
is a click event (chosen offer: campaign and landing page id, propensity,
model version, the raw request with its simulated ``ts``) and every postback
a sale event. A click logged without a ``landing_page_id`` reads as the
campaign's ``default`` page (the event contract's default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from clickrouter.events import ClickEvent, Event, SaleEvent
from clickrouter.profile import parse_timestamp
from clickrouter.stream import LocalLogSource

_decoder = msgspec.json.Decoder(Event)


class EventTail:
    """Follows an event-log directory; each :meth:`poll` returns the events new since."""

    def __init__(self, directory: Path) -> None:
        self.source = LocalLogSource(directory)

    def poll(self) -> tuple[list[ClickEvent], list[SaleEvent]]:
        clicks: list[ClickEvent] = []
        sales: list[SaleEvent] = []
        while chunks := self.source.poll():
            for chunk in chunks:
                for line in chunk.lines:
                    event = _decoder.decode(line)
                    if isinstance(event, ClickEvent):
                        clicks.append(event)
                    else:
                        sales.append(event)
        return clicks, sales


def simulated_ts(click: ClickEvent) -> float:
    """The simulated time the driver stamped on the request (wall time when absent)."""
    raw = click.raw or {}
    return parse_timestamp(raw["ts"]) if "ts" in raw else click.ts


@dataclass
class EventTables:
    """Clicks in simulated-time order, as columns, and the sales joined to them."""

    click_id: list[str] = field(default_factory=list)
    campaign_id: list[str] = field(default_factory=list)
    landing_page_id: list[str] = field(default_factory=list)
    model_version: list[str] = field(default_factory=list)
    profiles: list[dict[str, object]] = field(default_factory=list)
    sim_ts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    wall_ts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sale_revenue: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per click, 0 = none
    sales: int = 0
    orphan_sales: int = 0  # sales whose click is not in the log (must be 0)

    def __len__(self) -> int:
        return len(self.click_id)


def read_tables(directory: Path) -> EventTables:
    """Every click and sale in ``directory``; clicks sorted by simulated time."""
    clicks, sales = EventTail(directory).poll()
    clicks.sort(key=simulated_ts)
    tables = EventTables(
        click_id=[c.click_id for c in clicks],
        campaign_id=[c.campaign_id for c in clicks],
        landing_page_id=[c.landing_page_id for c in clicks],
        model_version=[c.model_version for c in clicks],
        profiles=[c.profile.to_dict() for c in clicks],
        sim_ts=np.array([simulated_ts(c) for c in clicks], dtype=np.float64),
        wall_ts=np.array([c.ts for c in clicks], dtype=np.float64),
    )
    row = {cid: i for i, cid in enumerate(tables.click_id)}
    revenue = np.zeros(len(clicks))
    for sale in sales:
        i = row.get(sale.click_id)
        if i is None:
            tables.orphan_sales += 1
        else:
            revenue[i] += sale.revenue
    tables.sale_revenue = revenue
    tables.sales = len(sales) - tables.orphan_sales
    return tables
