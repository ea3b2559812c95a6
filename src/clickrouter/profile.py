"""Raw ad request -> canonical profile fields.

An ad request carries loosely formatted fields (a country as "FRA", "250" or
"France", a timestamp as RFC 3339 or epoch seconds, sometimes only a user-agent
string). Training and serving must see exactly the same canonical values, so
both go through :func:`extract_profile`:

* ``country``: ISO 3166 alpha-2, upper case;
* ``device``, ``os``, ``browser``, ``provider``: lower-cased, trimmed strings;
* ``local_hour`` (0-23) and ``local_weekday`` (0=Monday .. 6) in the user's zone.

Unknown or missing categorical values map to :data:`UNKNOWN`, never to an
exception. A timestamp that is present but unreadable or out of range (before
1970, or further ahead of the server's clock than the caller allows), and a
``tz`` that names no IANA zone, are bad input and raise
:class:`~clickrouter.errors.InvalidInput` naming the field.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any, Final
from zoneinfo import ZoneInfo, available_timezones

import pycountry
import ua_parser

from clickrouter.errors import InvalidInput

UNKNOWN: Final = "unknown"
CATEGORICAL_FIELDS: Final = ("country", "device", "os", "browser", "provider")
NUMERIC_FIELDS: Final = ("local_hour", "local_weekday")
CANONICAL_FIELDS: Final = CATEGORICAL_FIELDS + NUMERIC_FIELDS
NUMERIC_DOMAINS: Final = {"local_hour": 24, "local_weekday": 7}

# zone.tab lists a country's zones west to east; for these large countries the
# first entry is far from where most users live, so name the populous zone.
_POPULOUS_ZONE: Final = {
    "AU": "Australia/Sydney",
    "BR": "America/Sao_Paulo",
    "CA": "America/Toronto",
    "RU": "Europe/Moscow",
    "UA": "Europe/Kyiv",
    "UZ": "Asia/Tashkent",
    "CL": "America/Santiago",
}
_TEXT_KINDS: Final = frozenset({str, type(None)})  # raw values the memo may key on
# the memo keeps at most this many characters per entry: its 16,384 entries of
# request bodies up to the body limit would otherwise hold a gigabyte
_MEMO_CHARS: Final = 2048
# longer values are not looked up: no country name is this long, no real user
# agent either, and fuzzy search or the agent regexes would scan all of it
_MAX_COUNTRY_CHARS: Final = 100
_MAX_USER_AGENT_CHARS: Final = 2048
# ua-parser's names for "could not tell"
_UA_UNKNOWN: Final = frozenset({"other", "generic smartphone", "generic feature phone", ""})


def extract_profile(
    raw: dict[str, Any], *, now: float | None = None, max_ahead: float | None = None
) -> dict[str, Any]:
    """Return the canonical profile of one raw (or already canonical) ad request.

    Missing ``ts`` means ``now`` (epoch seconds, default: the current time).
    Already-canonical input is accepted: ``local_hour``/``local_weekday`` given
    as integers in range are kept as they are (a ``ts`` beside them is still
    checked). ``max_ahead``: refuse a ``ts`` more than that many seconds ahead
    of the server's clock (a request cannot come from the future).
    """
    get = raw.get
    a, b, c, d, e = fields = (
        get("country"), get("device"), get("os"), get("browser"), get("provider")
    )  # fmt: skip
    agent, tz_name = get("user_agent"), get("tz")
    kinds = {type(v) for v in fields} | {type(agent), type(tz_name)}
    if kinds <= _TEXT_KINDS and (
        len(a or "") + len(b or "") + len(c or "") + len(d or "") + len(e or "")
        + len(agent or "") + len(tz_name or "")
        <= _MEMO_CHARS
    ):  # fmt: skip
        # real traffic repeats these strings: canonicalise each combination once
        country, device, os_name, browser, provider, zone = _static_fields(*fields, agent, tz_name)
    else:  # numbers, booleans, lists...: no cache (True == 1, 0.0 == -0.0 as keys)
        country, device, os_name, browser, provider = _canonical_fields(raw)
        zone = None
    hour, weekday = _local_time(raw, country, now, zone, max_ahead)
    return {
        "country": country,
        "device": device,
        "os": os_name,
        "browser": browser,
        "provider": provider,
        "local_hour": hour,
        "local_weekday": weekday,
    }


def _canonical_fields(raw: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """(country, device, os, browser, provider) of a raw request."""
    country = canonical_country(raw.get("country"))
    device, os_name, browser = _device_os_browser(raw)
    return country, device, os_name, browser, normalise_label(raw.get("provider"))


@lru_cache(maxsize=16384)
def _static_fields(
    country: str | None,
    device: str | None,
    os_name: str | None,
    browser: str | None,
    provider: str | None,
    user_agent: str | None,
    tz_name: str | None,
) -> tuple[str, str, str, str, str, ZoneInfo]:
    """The canonical fields that do not depend on the time, and the user's zone."""
    raw = {"country": country, "device": device, "os": os_name, "browser": browser}
    raw |= {"provider": provider, "user_agent": user_agent}
    fields = _canonical_fields(raw)
    return (*fields, zone_for(tz_name, fields[0]))


def click_id_of(raw: dict[str, Any]) -> str:
    """The request's ``click_id``, or a fresh random one when absent or empty."""
    value = raw.get("click_id")
    if value is None or value == "":
        return uuid.uuid4().hex
    if not isinstance(value, str | int):
        raise InvalidInput(f"field 'click_id': expected a string, got {value!r}")
    return str(value)


def normalise_label(value: Any) -> str:
    """Trim, collapse whitespace and lower-case a categorical value; empty -> UNKNOWN."""
    if value is None or isinstance(value, bool):
        return UNKNOWN
    if isinstance(value, float) and math.isnan(value):
        return UNKNOWN
    text = " ".join(str(value).split()).lower()
    return text or UNKNOWN


def canonical_country(value: Any) -> str:
    """ISO alpha-2 for a country given as alpha-2/alpha-3/numeric code or English name."""
    if value is None or isinstance(value, bool):
        return UNKNOWN
    text = " ".join(str(value).split())
    if not text or len(text) > _MAX_COUNTRY_CHARS:
        return UNKNOWN
    return _country_lookup(text.upper())


@lru_cache(maxsize=4096)
def _country_lookup(text: str) -> str:
    if text.isdigit():
        text = text.zfill(3)
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        pass
    if len(text) > 3 and not text.isdigit():
        try:
            return str(pycountry.countries.search_fuzzy(text)[0].alpha_2)
        except LookupError:
            pass
    return UNKNOWN


def _device_os_browser(raw: dict[str, Any]) -> tuple[str, str, str]:
    device = normalise_label(raw.get("device"))
    os_name = normalise_label(raw.get("os"))
    browser = normalise_label(raw.get("browser"))
    agent = raw.get("user_agent")
    if (
        UNKNOWN in (device, os_name, browser)
        and isinstance(agent, str)
        and 0 < len(agent) <= _MAX_USER_AGENT_CHARS
    ):
        parsed = parse_user_agent(agent)
        device = parsed[0] if device == UNKNOWN else device
        os_name = parsed[1] if os_name == UNKNOWN else os_name
        browser = parsed[2] if browser == UNKNOWN else browser
    return device, os_name, browser


@lru_cache(maxsize=8192)
def parse_user_agent(agent: str) -> tuple[str, str, str]:
    """(device, os, browser) families from a user-agent string, canonicalised."""
    result = ua_parser.parse(agent)
    families = (
        result.device.family if result.device else None,
        result.os.family if result.os else None,
        result.user_agent.family if result.user_agent else None,
    )
    labels = [normalise_label(f) for f in families]
    return tuple(UNKNOWN if label in _UA_UNKNOWN else label for label in labels)  # type: ignore[return-value]


def _local_time(
    raw: dict[str, Any],
    country: str,
    now: float | None,
    zone: ZoneInfo | None = None,
    max_ahead: float | None = None,
) -> tuple[int, int]:
    given = _given_local_time(raw)
    ts = raw.get("ts")
    if given is not None:
        if ts is not None:
            parse_timestamp(ts, now=now, max_ahead=max_ahead)  # checked, though not needed
        return given
    epoch = parse_timestamp(ts, now=now, max_ahead=max_ahead)
    return local_hour_weekday(epoch, zone or zone_for(raw.get("tz"), country))


# Local time by a cached UTC offset: the offset of a zone is looked up once per
# 15-minute span of UTC, and only trusted when the span starts and ends with the
# same offset (no transition inside). No tz database has two transitions within
# 15 minutes, so a span with equal ends has one offset throughout.
_SPAN = 900
_FAST_END = 253402300800 - 3 * 86400  # near year 9999 leave overflow to datetime


def local_hour_weekday(epoch: float, zone: ZoneInfo) -> tuple[int, int]:
    """(hour 0-23, weekday 0=Monday) of epoch seconds in ``zone``, DST-correct.

    The same as ``datetime.fromtimestamp(epoch, zone)``, which rounds to the
    microsecond: a fraction that could round up into the next second takes
    that exact path, as do spans that contain a transition.
    """
    second = math.floor(epoch)
    if epoch - second < 0.999999 and 0 <= epoch < _FAST_END:
        offset = _span_offset(zone, second // _SPAN)
        if offset is not None:
            local = second + offset
            return (local // 3600) % 24, (local // 86400 + 3) % 7  # 1970-01-01: a Thursday
    moment = datetime.fromtimestamp(epoch, tz=zone)
    return moment.hour, moment.weekday()


@lru_cache(maxsize=8192)
def _span_offset(zone: ZoneInfo, span: int) -> int | None:
    """UTC offset (seconds) of ``zone`` throughout a span, None if it changes within."""
    first = _offset_at(zone, span * _SPAN)
    return first if first == _offset_at(zone, span * _SPAN + _SPAN - 1) else None


def _offset_at(zone: ZoneInfo, epoch: int) -> int:
    offset = datetime.fromtimestamp(epoch, tz=zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _given_local_time(raw: dict[str, Any]) -> tuple[int, int] | None:
    hour, weekday = raw.get("local_hour"), raw.get("local_weekday")
    if _in_domain(hour, 24) and _in_domain(weekday, 7):
        return int(hour), int(weekday)  # type: ignore[arg-type]
    return None


def _in_domain(value: Any, size: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size


def parse_timestamp(
    value: Any, *, now: float | None = None, max_ahead: float | None = None
) -> float:
    """Epoch seconds from RFC 3339 text or epoch seconds; ``None`` means ``now``.

    A time before 1970-01-01 UTC is refused, and with ``max_ahead`` one more than
    that many seconds ahead of the server's clock.
    """
    if value is None or value == "":
        return now if now is not None else time.time()
    if isinstance(value, bool):
        raise InvalidInput(f"field 'ts': expected RFC 3339 or epoch seconds, got {value!r}")
    if isinstance(value, int | float):
        try:
            epoch = _checked_epoch(float(value), value)
        except OverflowError:  # an int beyond float range
            raise InvalidInput(f"field 'ts': epoch seconds out of range: {value!r}") from None
    elif isinstance(value, str):
        epoch = _parse_text_timestamp(value.strip())
    else:
        raise InvalidInput(f"field 'ts': expected RFC 3339 or epoch seconds, got {value!r}")
    if max_ahead is not None and epoch > time.time() + max_ahead:
        raise InvalidInput(
            f"field 'ts': {_shown(value)} is more than {max_ahead:g} s ahead of the server's clock"
        )
    return epoch


def _parse_text_timestamp(text: str) -> float:
    try:
        return _checked_epoch(float(text), text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidInput(
            f"field 'ts': expected RFC 3339 or epoch seconds, got {_shown(text)}"
        ) from None
    if parsed.tzinfo is None:  # RFC 3339 requires an offset; read a bare time as UTC
        parsed = parsed.replace(tzinfo=UTC)
    try:
        epoch = parsed.timestamp()
    except (OverflowError, ValueError):  # year 1 with a positive offset, ...
        epoch = -1.0
    if epoch < 0:
        raise InvalidInput(f"field 'ts': {_shown(text)} is before 1970-01-01T00:00:00Z")
    return epoch


def _checked_epoch(epoch: float, original: Any) -> float:
    # year 1970 .. 9999: anything else is a unit mistake (ms, us) or garbage
    if not math.isfinite(epoch) or not 0 <= epoch < 253402300800:
        raise InvalidInput(f"field 'ts': epoch seconds out of range: {_shown(original)}")
    return epoch


def _shown(value: Any) -> str:
    """A request value quoted in an error message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def zone_for(tz_name: Any, country: str) -> ZoneInfo:
    """The user's zone: an explicit IANA ``tz`` wins, else the country's main zone, else UTC.

    A ``tz`` that is given (not None or empty) but names no zone of the tz
    database raises :class:`InvalidInput`.
    """
    if tz_name is not None and not (isinstance(tz_name, str) and not tz_name.strip()):
        return _zone_named(tz_name)
    return _zone_by_name(country_zone_name(country)) or ZoneInfo("UTC")


def _zone_named(tz_name: Any) -> ZoneInfo:
    zone = _zone_by_name(tz_name.strip()) if isinstance(tz_name, str) else None
    if zone is None:
        raise InvalidInput(f"field 'tz': expected an IANA time zone name, got {_shown(tz_name)}")
    return zone


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    """Every zone of the tz database, by lower-cased name.

    A ``tz`` is looked up here before zoneinfo opens a file, so no request can
    name a path (``../``, a directory such as ``Europe``) or an overlong name.
    """
    return {name.lower(): name for name in available_timezones()}


def _zone_by_name(name: str) -> ZoneInfo | None:
    listed = _zone_names().get(name.lower())
    return None if listed is None else _zone(listed)


@lru_cache(maxsize=1024)
def _zone(listed: str) -> ZoneInfo:
    return ZoneInfo(listed)


def country_zone_name(country: str) -> str:
    """IANA zone of a country's main population centre (``UTC`` when unknown)."""
    return _POPULOUS_ZONE.get(country) or _country_zones().get(country, ("UTC",))[0]


@lru_cache(maxsize=1)
def _country_zones() -> dict[str, tuple[str, ...]]:
    """Country -> zones, from the tz database's own ``zone.tab`` (shipped by tzdata)."""
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text("utf-8")
    zones: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, _coords, name, *_ = line.split("\t")
            zones.setdefault(code, []).append(name)
    return {code: tuple(names) for code, names in zones.items()}


def country_zones(country: str) -> tuple[str, ...]:
    """Every IANA zone the tz database lists for a country (empty when unknown)."""
    return _country_zones().get(country, ())


def profile_frame(profiles: list[dict[str, Any]]) -> Any:
    """The "profile frame" campaign models read: one row per canonical profile.

    Categorical columns hold strings, numeric columns ``int64``; the column
    order is :data:`CANONICAL_FIELDS`. Returns a ``pandas.DataFrame``.
    """
    import pandas as pd

    columns: dict[str, Any] = {f: [p[f] for p in profiles] for f in CATEGORICAL_FIELDS}
    frame = pd.DataFrame(columns, dtype=object)
    for field in NUMERIC_FIELDS:
        frame[field] = pd.array([p[field] for p in profiles], dtype="int64")
    return frame
