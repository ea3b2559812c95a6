"""Drawn requests -> raw ad requests (as they arrive) and canonical profiles.

Raw requests spell their fields the way real traffic does: the country as
alpha-2, alpha-3, numeric code or English name; device, OS and browser as
explicit fields or only inside a user agent; carrier names in odd case; ``ts``
as epoch seconds or RFC 3339 with the user's local offset; a ``tz`` when the
user is not in the zone extraction would assume. Each raw request extracts
(:func:`clickrouter.profile.extract_profile`) to exactly the canonical
profile recorded next to it; the canonical columns are computed here in bulk
rather than by calling the extractor per request.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import msgspec
import numpy as np

from clickrouter.profile import UNKNOWN
from clickrouter.sim.devices import OS_DISPLAY, OS_NAMES
from clickrouter.sim.population import Audience, Draw

Columns = dict[str, list[Any]]


def _messy(label: str) -> str:
    """A spelling that normalises back to the same canonical label."""
    return f" {label.upper().replace(' ', '  ')} "


def _pair_table(labels: list[str]) -> np.ndarray:
    return np.array([[label, _messy(label)] for label in labels], dtype=object)


def _offset_suffix(seconds: int) -> str:
    if seconds == 0:
        return "Z"
    sign = "+" if seconds > 0 else "-"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class RequestRenderer:
    """String tables of an :class:`Audience`, for rendering draws in bulk."""

    def __init__(self, audience: Audience) -> None:
        self.audience = audience
        self.config = audience.config
        pop, cat = audience.population, audience.population.devices
        self.country_forms = np.array(pop.country_forms, dtype=object)
        self.device_names = _pair_table(cat.displays)
        self.os_names = _pair_table(list(OS_DISPLAY))
        self.browser_names = _pair_table(cat.browser_displays)
        self.carrier_names = _pair_table(pop.carriers)
        self.user_agents = np.array(cat.user_agents, dtype=object)
        # the same agents pre-encoded as JSON, for writers that splice them in verbatim
        self.user_agents_json = np.array(
            [[msgspec.Raw(msgspec.json.encode(a)) for a in row] for row in cat.user_agents],
            dtype=object,
        )
        self.ua_exact = np.array(cat.ua_exact, dtype=bool)
        self.zone_names = np.array(pop.zones, dtype=object)
        self.zone_is_main = np.array(pop.zone_is_main, dtype=bool)
        vocab = audience.vocabulary.values
        self.canon = {
            "country": np.array(pop.countries, dtype=object),
            "device": np.array(cat.devices, dtype=object),
            "os": np.array(OS_NAMES, dtype=object),
            "browser": np.array(cat.browsers, dtype=object),
            # carrier index -1 (no carrier) reads the last entry
            "provider": np.array([*vocab["provider"][1:], UNKNOWN], dtype=object)[
                audience.carrier_slot - 1
            ],
        }

    def canonical_columns(self, draw: Draw) -> Columns:
        """Canonical profile fields as lists of Python values, one entry per request."""
        os_index = self.audience.device_os[draw.device]
        return {
            "country": self.canon["country"][draw.country].tolist(),
            "device": self.canon["device"][draw.device].tolist(),
            "os": self.canon["os"][os_index].tolist(),
            "browser": self.canon["browser"][draw.browser].tolist(),
            "provider": self.canon["provider"][draw.carrier].tolist(),
            "local_hour": draw.local_hour.tolist(),
            "local_weekday": draw.local_weekday.tolist(),
        }

    def raw_columns(
        self, rng: np.random.Generator, draw: Draw, *, encoded: bool = False
    ) -> Columns:
        """Raw request fields as lists; ``None`` means the field is absent.

        ``encoded``: user agents as pre-encoded :class:`msgspec.Raw` JSON strings.
        """
        n, cfg = len(draw), self.config
        messy = (rng.random((n, 4)) < cfg.messy_label_rate).astype(np.int64)
        form = rng.choice(4, n, p=np.array(cfg.country_forms))
        ua_only = (rng.random(n) < cfg.user_agent_only_rate) & self.ua_exact[
            draw.device, draw.browser
        ]
        with_ua = ua_only | (rng.random(n) < cfg.user_agent_rate)
        explicit = ~ua_only
        os_index = self.audience.device_os[draw.device]
        agents = self.user_agents_json if encoded else self.user_agents
        tz_given = ~self.zone_is_main[draw.zone] | (rng.random(n) < cfg.tz_rate)
        return {
            "ts": self._timestamps(rng, draw),
            "country": self.country_forms[draw.country, form].tolist(),
            "tz": _where(tz_given, self.zone_names[draw.zone]),
            "device": _where(explicit, self.device_names[draw.device, messy[:, 0]]),
            "os": _where(explicit, self.os_names[os_index, messy[:, 1]]),
            "browser": _where(explicit, self.browser_names[draw.browser, messy[:, 2]]),
            "user_agent": _where(with_ua, agents[draw.device, draw.browser]),
            "provider": _where(draw.carrier >= 0, self.carrier_names[draw.carrier, messy[:, 3]]),
        }

    def _timestamps(self, rng: np.random.Generator, draw: Draw) -> list[Any]:
        """Epoch seconds, or RFC 3339 text in the user's local offset."""
        out = (draw.ts_ms / 1000.0).astype(object)
        rows = np.flatnonzero(rng.random(len(draw)) < self.config.rfc3339_rate)
        out[rows] = rfc3339_local(draw.ts_ms[rows], draw.offset[rows])
        return out.tolist()


def rfc3339_local(ts_ms: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """RFC 3339 text (ms precision) of epoch-ms times in the given UTC offsets (s).

    Assembled from lookup tables (dates, "Thh:mm:", "ss.mmm", offset suffixes)
    by object-array concatenation: twice as fast as ``datetime_as_string``.
    """
    hour_minute, second_milli = _clock_tables()
    local = ts_ms + offsets * 1000
    day = local // 86_400_000
    days, day_index = np.unique(day, return_inverse=True)
    dates = np.datetime_as_string(days.astype("datetime64[D]")).astype(object)
    offsets_seen, offset_index = np.unique(offsets, return_inverse=True)
    suffix = np.array([_offset_suffix(int(o)) for o in offsets_seen], dtype=object)
    in_day = local - day * 86_400_000
    return (
        dates[day_index]
        + hour_minute[in_day // 60_000]
        + second_milli[in_day % 60_000]
        + suffix[offset_index]
    )


@lru_cache(maxsize=1)
def _clock_tables() -> tuple[np.ndarray, np.ndarray]:
    hour_minute = [f"T{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
    second_milli = [f"{s:02d}.{ms:03d}" for s in range(60) for ms in range(1000)]
    return np.array(hour_minute, dtype=object), np.array(second_milli, dtype=object)


def _where(mask: np.ndarray, values: np.ndarray) -> list[Any]:
    out = np.full(len(mask), None, dtype=object)
    out[mask] = values[mask]
    return out.tolist()
