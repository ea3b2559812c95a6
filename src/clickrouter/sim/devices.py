"""Device models, their OS and browsers, and the user agents they send.

Popularity is Zipf-like within each OS (a few phones carry most traffic, a long
tail of models each carries almost none). Canonical device/os/browser names are
what :func:`clickrouter.profile.parse_user_agent` makes of the user agent, so a
request that carries only its user agent extracts to the same canonical values
as one that spells the fields out. Pairs whose user agent does not identify the
device (Firefox on Android omits the model) are flagged: their requests must
carry explicit fields.
"""

from __future__ import annotations

import msgspec
import numpy as np
import ua_parser

from clickrouter.profile import UNKNOWN, parse_user_agent

OS_NAMES = ("android", "ios")
OS_DISPLAY = ("Android", "iOS")

_ANDROID = "Mozilla/5.0 (Linux; Android 13; {m}) AppleWebKit/537.36 (KHTML, like Gecko)"
_IOS = "Mozilla/5.0 ({m}; CPU {os} 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
# browser -> (OS index, share on that OS, user-agent template)
BROWSERS: dict[str, tuple[int, float, str]] = {
    "Chrome Mobile": (0, 0.62, _ANDROID + " Chrome/120.0.0.0 Mobile Safari/537.36"),
    "Samsung Internet": (
        0,
        0.12,
        _ANDROID + " SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    ),
    "Facebook": (
        0,
        0.1,
        "Mozilla/5.0 (Linux; Android 13; {m} Build/TP1A; wv) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Version/4.0 Chrome/120.0.0.0 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/440.0.0.0;]",
    ),
    "Opera Mobile": (
        0,
        0.05,
        _ANDROID + " Chrome/120.0.0.0 Mobile Safari/537.36 OPR/79.0.4195.76544",
    ),
    "UC Browser": (
        0,
        0.06,
        "Mozilla/5.0 (Linux; U; Android 13; en-US; {m} Build/TP1A) AppleWebKit/537.36 (KHTML, "
        "like Gecko) Version/4.0 Chrome/100.0.4896.58 UCBrowser/13.4.0.1306 Mobile Safari/537.36",
    ),
    "Firefox Mobile": (
        0,
        0.05,
        "Mozilla/5.0 (Android 13; Mobile; rv:120.0) Gecko/120.0 Firefox/120.0",
    ),
    "Mobile Safari": (1, 0.78, _IOS + " Version/17.1 Mobile/15E148 Safari/604.1"),
    "Chrome Mobile iOS": (1, 0.12, _IOS + " CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1"),
    "Facebook iOS": (1, 0.1, _IOS + " Mobile/15E148 [FBAN/FBIOS;FBAV/440.0.0.0;]"),
}
_SAMSUNG_ONLY = "Samsung Internet"

# iOS user agents name only the family; most iOS traffic is phones.
IOS_MODELS = (("iPhone", "iPhone OS", 0.9), ("iPad", "OS", 0.1))
# best-selling Android models as their user agents spell them, most popular first
ANDROID_MODELS = (
    "SM-A515F SM-A125F Redmi Note 8 SM-A127F Redmi Note 9 SM-A325F SM-G991B Redmi 9A "
    "SM-A525F CPH2127 Redmi Note 10 SM-A135F TECNO KE5 SM-S901B RMX3085 Infinix X6511 "
    "Redmi Note 11 V2111 SM-A145F Pixel 7 SM-A235F M2101K6G CPH2239 Redmi 10C SM-S911B "
    "RMX3363 moto g(60) SM-A336B Infinix X6515 Redmi Note 12 SM-M215F V2027 Pixel 6 "
    "CPH2269 TECNO KG5 SM-A536B Redmi 12C RMX3511 moto g(30) SM-G781B Pixel 7a CPH2359 "
    "V2201 TECNO BF6 SM-A037F Infinix X669 moto e(7) SM-A042F RMX3630 Pixel 8 CPH2387 "
    "SM-A055F moto g22"
)
_REAL_MODELS: tuple[str, ...] = tuple(
    m.replace("_", " ")
    for m in ANDROID_MODELS.replace("Redmi Note ", "Redmi_Note_")
    .replace("Redmi ", "Redmi_")
    .replace("TECNO ", "TECNO_")
    .replace("Infinix ", "Infinix_")
    .replace("moto ", "moto_")
    .replace("Pixel ", "Pixel_")
    .split()
)


class DeviceCatalogue(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Devices (canonical names, index order) with OS, popularity and browser mix.

    ``browser_p[d][b]`` is P(browser b | device d); ``user_agents[d][b]`` the
    agent that pair sends ("" when impossible); ``ua_exact[d][b]`` whether that
    agent alone extracts to the canonical (device, os, browser).
    """

    devices: list[str]
    displays: list[str]
    os_of: list[int]
    popularity: list[float]  # P(device | its OS)
    browsers: list[str]
    browser_displays: list[str]  # as a request spells the browser (parsed family)
    browser_p: list[list[float]]
    user_agents: list[list[str]]
    ua_exact: list[list[bool]]


def build_catalogue(rng: np.random.Generator, n_devices: int, zipf: float) -> DeviceCatalogue:
    """iOS families plus ``n_devices`` Android models (real ones, then a synthetic tail)."""
    models = _android_models(rng, n_devices)
    rows: list[tuple[str, str, int, dict[str, str]]] = []
    seen: set[str] = set()
    for model, os_label, _ in IOS_MODELS:
        rows.append(_device_row(model, 1, os_label, seen))
    for model in models:
        row = _device_row(model, 0, "", seen)
        if row[0] != UNKNOWN:
            rows.append(row)
    return _catalogue(rows, zipf)


def _android_models(rng: np.random.Generator, n: int) -> list[str]:
    patterns = ("SM-A{}F", "RMX{}", "CPH{}", "V2{}", "Infinix X6{}", "TECNO K{}")
    models = list(_REAL_MODELS[:n])
    while len(models) < n:
        pattern = patterns[int(rng.integers(len(patterns)))]
        models.append(pattern.format(int(rng.integers(100, 1000))))
    return models


def _device_row(
    model: str, os_index: int, os_label: str, seen: set[str]
) -> tuple[str, str, int, dict[str, str]]:
    agents = {
        name: template.format(m=model, os=os_label)
        for name, (os_of, _, template) in BROWSERS.items()
        if os_of == os_index
    }
    first = next(iter(agents.values()))
    canonical = parse_user_agent(first)[0]
    display = ua_parser.parse(first).device
    if canonical in seen or display is None:
        return UNKNOWN, model, os_index, agents
    seen.add(canonical)
    return canonical, display.family, os_index, agents


def _catalogue(rows: list[tuple[str, str, int, dict[str, str]]], zipf: float) -> DeviceCatalogue:
    browsers = list(BROWSERS)
    canon_browsers = [parse_user_agent(_example_agent(b))[2] for b in browsers]
    displays = [_family(_example_agent(b)) for b in browsers]
    popularity = _zipf_within_os(rows, zipf)
    browser_p, agents, exact = [], [], []
    for canonical, display, os_index, row_agents in rows:
        p = _browser_mix(display, os_index)
        browser_p.append(p)
        agents.append([row_agents.get(b, "") for b in browsers])
        exact.append(
            [
                bool(ua) and parse_user_agent(ua) == (canonical, OS_NAMES[os_index], cb)
                for ua, cb in zip(agents[-1], canon_browsers, strict=True)
            ]
        )
    return DeviceCatalogue(
        devices=[r[0] for r in rows],
        displays=[r[1] for r in rows],
        os_of=[r[2] for r in rows],
        popularity=popularity,
        browsers=canon_browsers,
        browser_displays=displays,
        browser_p=browser_p,
        user_agents=agents,
        ua_exact=exact,
    )


def _example_agent(browser: str) -> str:
    return BROWSERS[browser][2].format(m="SM-A515F", os="iPhone OS")


def _family(agent: str) -> str:
    parsed = ua_parser.parse(agent).user_agent
    return parsed.family if parsed else UNKNOWN


def _zipf_within_os(rows: list[tuple[str, str, int, dict[str, str]]], zipf: float) -> list[float]:
    popularity = [0.0] * len(rows)
    ios_share = {model: share for model, _, share in IOS_MODELS}
    for os_index in range(len(OS_NAMES)):
        members = [i for i, row in enumerate(rows) if row[2] == os_index]
        weights = np.arange(1, len(members) + 1, dtype=float) ** -zipf
        if os_index == 1:
            weights = np.array([ios_share.get(rows[i][1], 0.01) for i in members])
        for i, w in zip(members, weights / weights.sum(), strict=True):
            popularity[i] = float(w)
    return popularity


def _browser_mix(display: str, os_index: int) -> list[float]:
    shares = [
        share
        if os_of == os_index and (name != _SAMSUNG_ONLY or "samsung" in display.lower())
        else 0.0
        for name, (os_of, share, _) in BROWSERS.items()
    ]
    total = sum(shares)
    return [s / total for s in shares]
