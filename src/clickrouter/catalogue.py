"""The campaign catalogue (``campaigns.json``) of a model directory.

``campaigns.json`` is a JSON list of objects::

    {"id": "c42", "landing_page": "https://shop.example/?cid={click_id}",
     "payout": 2.5, "active": true,
     "targeting": {"countries": {"allow": ["FR", "DE"]}, "os": {"deny": ["ios"]}}}

A targeting rule is ``{"allow": [...], "deny": [...]}``, or a bare list as a
short form of ``allow``. Country values may be any form profile extraction
accepts ("FRA", "250", "France"); they are canonicalised on load.

A landing page is where the predictor redirects a click (``Location``), so it
must be an absolute ``http``/``https`` URL with a host, in ASCII, without
whitespace or control characters (which could split the header);
``{click_id}`` is the only placeholder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec

from clickrouter.errors import ModelLoadError
from clickrouter.profile import canonical_country, normalise_label

# canonical profile field that each targeting key restricts
TARGETING_FIELDS = {"countries": "country", "os": "os"}
LANDING_SCHEMES = ("http", "https")
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")  # controls and spaces: no header splitting
MAX_LANDING_PAGE_CHARS = 4096


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Allow/deny lists for one canonical field (canonical values)."""

    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()

    def admits(self, value: str) -> bool:
        if value in self.deny:
            return False
        return self.allow is None or value in self.allow


class Campaign(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One campaign of the catalogue."""

    id: str
    landing_page: str
    payout: float
    active: bool = True
    targeting: dict[str, Rule | list[str]] = msgspec.field(default_factory=dict)

    def rules(self) -> dict[str, Rule]:
        """Targeting rules keyed by canonical profile field, values canonicalised."""
        return {
            TARGETING_FIELDS[key]: _canonical_rule(key, rule)
            for key, rule in self.targeting.items()
        }

    def landing_page_for(self, click_id: str) -> str:
        """The landing page URL; the click id is percent-encoded (no header or URL injection)."""
        if not (click_id.isascii() and click_id.isalnum()):  # issued ids need no quoting
            click_id = quote(click_id, safe="-._~")
        return self.landing_page.replace("{click_id}", click_id)


def _canonical_rule(key: str, rule: Rule | list[str]) -> Rule:
    if isinstance(rule, list):
        rule = Rule(allow=tuple(rule))
    canon = canonical_country if key == "countries" else normalise_label
    allow = None if rule.allow is None else tuple(canon(v) for v in rule.allow)
    return Rule(allow=allow, deny=tuple(canon(v) for v in rule.deny))


def load_catalog(path: Path, data: bytes | None = None) -> tuple[list[Campaign], list[str]]:
    """Campaigns of ``path`` in file order, and the problems of the entries skipped.

    data: the file's bytes when the caller has read (and checked) them already.
    A file that is missing or is not a JSON list raises :class:`ModelLoadError`;
    an invalid entry is reported (naming its position and field) and skipped.
    """
    try:
        entries = msgspec.json.decode(path.read_bytes() if data is None else data)
    except OSError as exc:
        raise ModelLoadError(
            f"{path}: cannot read the campaign catalogue: {exc.strerror}"
        ) from None
    except msgspec.DecodeError as exc:
        raise ModelLoadError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ModelLoadError(f"{path}: expected a JSON list of campaigns")
    return _validated(path, entries)


def _validated(path: Path, entries: list[Any]) -> tuple[list[Campaign], list[str]]:
    campaigns: list[Campaign] = []
    problems: list[str] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        try:
            campaign = _campaign(entry)
        except (msgspec.ValidationError, ValueError) as exc:
            problems.append(f"{path}: entry {position}: {exc}")
            continue
        if campaign.id in seen:
            problems.append(f"{path}: entry {position}: duplicate campaign id {campaign.id!r}")
            continue
        seen.add(campaign.id)
        campaigns.append(campaign)
    return campaigns, problems


def _campaign(entry: Any) -> Campaign:
    campaign = msgspec.convert(entry, Campaign)
    if not campaign.id or "/" in campaign.id or campaign.id.startswith("."):
        raise ValueError(f"invalid campaign id {campaign.id!r}")
    if not campaign.payout >= 0:  # also rejects NaN
        raise ValueError(f"payout must be >= 0, got {campaign.payout!r} (campaign {campaign.id!r})")
    unknown = set(campaign.targeting) - set(TARGETING_FIELDS)
    if unknown:
        raise ValueError(f"unknown targeting keys {sorted(unknown)} (campaign {campaign.id!r})")
    problem = landing_page_problem(campaign.landing_page)
    if problem is not None:
        raise ValueError(f"landing_page {problem} (campaign {campaign.id!r})")
    return campaign


def landing_page_problem(url: str) -> str | None:
    """Why ``url`` is not an absolute http(s) URL a click may be sent to (None: it is)."""
    if len(url) > MAX_LANDING_PAGE_CHARS:
        return f"is longer than {MAX_LANDING_PAGE_CHARS} characters"
    if _UNSAFE_URL_CHARS.search(url):
        return f"{url!r} contains whitespace or control characters"
    if not url.isascii():
        return f"{url!r} is not ASCII (percent-encode other characters)"
    try:
        parts = urlsplit(url.replace("{click_id}", "x"))
        hostname, _ = parts.hostname, parts.port  # port: raises on a malformed one
    except ValueError as exc:
        return f"{url!r} is not a valid URL: {exc}"
    if parts.scheme.lower() not in LANDING_SCHEMES:
        return f"{url!r} must be an absolute http or https URL (scheme {parts.scheme or 'none'!r})"
    if not hostname:
        return f"{url!r} has no host"
    return None


def write_catalog(path: Path, campaigns: list[Campaign]) -> None:
    """Write ``campaigns.json`` (pretty, stable order)."""
    path.write_bytes(msgspec.json.format(msgspec.json.encode(campaigns), indent=1))
