"""A small logistic world with known truth, written in the DataManager's on-disk layout.

Each campaign has a base rate and per-value effects on country, device, os and
hour; a click's sale probability is ``expit(intercept + effects)``. Records are
written as hive-partitioned Parquet ``campaign_id=<id>/date=<YYYY-MM-DD>/``
with the labelled-record schema minus the partition columns. A frame without
``landing_page_id`` is written as clicks sent to the ``default`` page (through
the DataManager) or as files of the layout before pages (bare files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.special import expit, logit

from clickrouter.datastore import DataManager, as_records
from clickrouter.training.data import FILE_SCHEMA

VALUES = {
    "country": ["FR", "DE", "ES", "IT", "GB", "US", "BR", "IN"],
    "device": [f"dev-{i}" for i in range(12)],
    "os": ["android", "ios", "unknown"],
    "browser": ["chrome mobile", "mobile safari", "opera mini"],
    "provider": ["carrier-a", "carrier-b", "carrier-c"],
}
EFFECT_FIELDS = ("country", "device", "os")
T0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DAY = 86400.0


@dataclass
class Truth:
    """Ground truth of one campaign: P(sale) = expit(intercept + sum of effects)."""

    intercept: float
    effects: dict[str, dict[Any, float]] = field(default_factory=dict)

    def proba(self, frame: pd.DataFrame) -> np.ndarray:
        z = np.full(len(frame), self.intercept)
        for name, table in self.effects.items():
            z += frame[name].map(table).fillna(0.0).to_numpy(dtype=np.float64)
        return np.asarray(expit(z))


class World:
    """Campaign truths and a traffic generator."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.truths: dict[str, Truth] = {}

    def add_campaign(self, cid: str, base_rate: float, strength: float = 1.0) -> Truth:
        effects = {
            f: {v: float(self.rng.normal(0, strength)) for v in VALUES[f]} for f in EFFECT_FIELDS
        }
        effects["local_hour"] = {h: float(0.5 * strength * np.sin(h / 4)) for h in range(24)}
        truth = Truth(float(logit(base_rate)), effects)
        centre = np.mean(truth.proba(self.traffic(20_000, T0)))  # make base_rate the mean
        truth.intercept += float(logit(base_rate) - logit(centre))
        self.truths[cid] = truth
        return truth

    def traffic(self, n: int, start: float, days: float = 4.0) -> pd.DataFrame:
        rng = self.rng
        cols: dict[str, Any] = {f: rng.choice(v, n) for f, v in VALUES.items()}
        ts = np.sort(start + rng.random(n) * days * DAY)
        cols["local_hour"] = ((ts % DAY) // 3600).astype(np.int8)
        cols["local_weekday"] = ((ts // DAY + 3) % 7).astype(np.int8)
        frame = pd.DataFrame(cols)
        frame.insert(0, "ts", ts)
        frame.insert(0, "click_id", [f"k{i}" for i in rng.integers(0, 2**62, n)])
        return frame

    def records(self, cid: str, n: int, start: float = T0, days: float = 4.0) -> pd.DataFrame:
        frame = self.traffic(n, start, days)
        label = self.rng.random(n) < self.truths[cid].proba(frame)
        frame["label"] = label.astype(np.int8)
        frame["revenue"] = np.where(label, 10.0, 0.0)
        frame["sale_ts"] = np.where(label, frame["ts"] + 60.0, np.nan)
        frame["propensity"] = 1.0
        frame["model_version"] = "v0"
        return frame


def write_records(root: Path, cid: str, frame: pd.DataFrame, tag: str = "0") -> None:
    """Commit ``frame`` as campaign ``cid``'s records through the real DataManager."""
    write_many(root, {cid: frame}, tag)


def write_many(root: Path, frames: dict[str, pd.DataFrame], tag: str = "0") -> None:
    """One DataManager commit holding several campaigns' records."""
    parts = [frame.assign(campaign_id=cid) for cid, frame in frames.items()]
    table = pa.Table.from_pandas(pd.concat(parts), preserve_index=False)
    with DataManager(root, writable=True, durable=False) as manager:
        manager.commit(as_records(table), source={"test": tag})


def write_raw_layout(root: Path, cid: str, frame: pd.DataFrame, tag: str = "0") -> None:
    """``frame`` as bare hive-partitioned files (no DataManager manifest)."""
    days = pd.to_datetime(frame["ts"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    for day, part in frame.groupby(days.to_numpy()):
        folder = root / f"campaign_id={cid}" / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        schema = pa.schema([f for f in FILE_SCHEMA if f.name in part])
        table = pa.Table.from_pandas(part[schema.names], preserve_index=False)
        pq.write_table(table.cast(schema), folder / f"part-{tag}.parquet")


def write_catalog(path: Path, ids: list[str]) -> Path:
    entries = [
        {"id": c, "landing_page": f"https://shop.example/{c}?k={{click_id}}", "payout": 1.0}
        for c in ids
    ]
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


@pytest.fixture
def world() -> World:
    return World(seed=7)


@pytest.fixture
def write_dataset() -> Any:
    return write_records


@pytest.fixture
def write_datasets() -> Any:
    return write_many


@pytest.fixture
def write_raw() -> Any:
    return write_raw_layout


@pytest.fixture
def catalog_file() -> Any:
    return write_catalog
