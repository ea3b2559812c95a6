"""When and where requests happen: a diurnal, weekly arrival process per time zone.

The intensity of zone z at UTC time t is ``w_z * diurnal[local hour] *
weekly[local weekday]``, with the local time read from the tz database (DST
included), so traffic follows the sun around the globe. Time is cut into
15-minute bins (every UTC offset in use is a multiple of 15 minutes, so a zone's
local hour is constant within a bin); arrivals are Poisson per bin, and the zone
of each arrival is drawn from that bin's zone mix.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from clickrouter.sim.config import WorldConfig

BIN_SECONDS = 900
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def local_hour_weekday(epoch_s: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local hour (0-23) and weekday (0=Monday) for epoch seconds and UTC offsets (s)."""
    local = epoch_s.astype(np.int64) + offsets
    return (local // 3600) % 24, (local // 86400 + _EPOCH_WEEKDAY) % 7


class Timeline:
    """Arrival process over ``zones`` with relative volumes ``zone_weight``."""

    def __init__(self, zones: list[str], zone_weight: np.ndarray, config: WorldConfig) -> None:
        self.zone_names = list(zones)
        self._zones = [ZoneInfo(name) for name in zones]
        self.zone_weight = np.asarray(zone_weight, dtype=float) / np.sum(zone_weight)
        diurnal = np.asarray(config.diurnal_curve, dtype=float)
        weekly = np.asarray(config.weekday_weights, dtype=float)
        self.diurnal = diurnal / diurnal.mean()
        self.weekly = weekly / weekly.mean()
        self.rate_per_second = config.requests_per_day / 86400.0
        self._bins: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}

    def offsets(self, epoch_s: float) -> np.ndarray:
        """UTC offset (seconds) of every zone at ``epoch_s``; shape (n_zones,)."""
        moment = datetime.fromtimestamp(epoch_s, tz=UTC)
        return np.array(
            [int(moment.astimezone(zone).utcoffset().total_seconds()) for zone in self._zones],  # type: ignore[union-attr]
            dtype=np.int64,
        )

    def bin_mix(self, bin_index: int) -> tuple[float, np.ndarray, np.ndarray]:
        """(relative intensity, P(zone), zone offsets) of one 15-minute bin."""
        cached = self._bins.get(bin_index)
        if cached is None:
            start = bin_index * BIN_SECONDS
            offsets = self.offsets(start)
            hour, weekday = local_hour_weekday(np.full(len(offsets), start), offsets)
            weights = self.zone_weight * self.diurnal[hour] * self.weekly[weekday]
            total = float(weights.sum())
            cached = (total, weights / total, offsets)
            if len(self._bins) > 4096:  # arrivals move forward: old bins are not reused
                self._bins.clear()
            self._bins[bin_index] = cached
        return cached

    def arrivals(
        self, rng: np.random.Generator, n: int, start_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``n`` arrivals from ``start_s``: (ts_ms sorted, zone index, offset s)."""
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        got, bin_index = 0, int(start_s // BIN_SECONDS)
        start_ms = int(np.ceil(start_s * 1000))
        while got < n:
            intensity, mix, offsets = self.bin_mix(bin_index)
            lo = max(start_ms, bin_index * BIN_SECONDS * 1000)
            hi = (bin_index + 1) * BIN_SECONDS * 1000
            expected = self.rate_per_second * intensity * (hi - lo) / 1000.0
            count = int(rng.poisson(expected))
            if count:
                ts = np.sort(rng.integers(lo, hi, count))
                zone = rng.choice(len(mix), count, p=mix)
                parts.append((ts, zone, offsets[zone]))
                got += count
            bin_index += 1
        ts, zone, off = (np.concatenate(cols) for cols in zip(*parts, strict=True))
        return ts[:n], zone[:n], off[:n]

    @property
    def max_intensity(self) -> float:
        """Upper bound of the relative intensity (every zone at its peak hour and day)."""
        return float(self.diurnal.max() * self.weekly.max())

    def intensity(self, ts_ms: np.ndarray) -> np.ndarray:
        """Relative traffic intensity at each time (ms); mean about 1 over a week."""
        bins = np.asarray(ts_ms, dtype=np.int64) // (BIN_SECONDS * 1000)
        distinct, which = np.unique(bins, return_inverse=True)
        values = np.array([self.bin_mix(int(b))[0] for b in distinct])
        return values[which]

    def zones_at(
        self, rng: np.random.Generator, ts_ms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A zone drawn from the traffic mix at each given time: (zone index, offset s)."""
        ts_ms = np.asarray(ts_ms, dtype=np.int64)
        bins = ts_ms // (BIN_SECONDS * 1000)
        zone = np.empty(len(ts_ms), dtype=np.int64)
        offset = np.empty(len(ts_ms), dtype=np.int64)
        for bin_index in np.unique(bins):
            rows = np.flatnonzero(bins == bin_index)
            _, mix, offsets = self.bin_mix(int(bin_index))
            zone[rows] = rng.choice(len(mix), len(rows), p=mix)
            offset[rows] = offsets[zone[rows]]
        return zone, offset
