"""The campaign catalogue (``campaigns.json``) of a model directory.

``campaigns.json`` is a JSON list of objects::

    {"id": "c42", "payout": 2.5, "active": true,
     "targeting": {"countries": {"allow": ["FR", "DE"]}, "os": {"deny": ["ios"]}},
     "landing_pages": [
        {"id": "fr", "url": "https://shop.example/fr?cid={click_id}",
         "targeting": {"countries": ["FR"]}},
        {"id": "form", "url": "https://shop.example/form?cid={click_id}", "active": false}]}

A campaign runs one or more landing pages; an *offer* is a (campaign, page)
pair, and the predictor chooses among offers. ``"landing_page": URL`` instead
of ``landing_pages`` is the short form of one page with id ``default``. A page
is shown only when its campaign is active, it is active itself, and both its
campaign's and its own targeting admit the request. Page ids are unique within
their campaign; a campaign must have at least one active page.

A targeting rule is ``{"allow": [...], "deny": [...]}``, or a bare list as a
short form of ``allow``. Country values may be any form profile extraction
accepts ("FRA", "250", "France"); they are canonicalised on load.

A landing page URL is where the predictor redirects a click (``Location``), so
it must be an absolute ``http``/``https`` URL with a host, in ASCII, without
whitespace or control characters (which could split the header);
``{click_id}`` is the only placeholder.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

import msgspec

from clickrouter.errors import ModelLoadError
from clickrouter.profile import canonical_country, normalise_label

# canonical profile field that each targeting key restricts
TARGETING_FIELDS = {"countries": "country", "os": "os"}
LANDING_SCHEMES = ("http", "https")
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")  # controls and spaces: no header splitting
MAX_LANDING_PAGE_CHARS = 4096
DEFAULT_PAGE_ID = "default"  # the page of a campaign given by the short form ``landing_page``
# the model input column holding an offer's page id (a campaign model may read it)
PAGE_INPUT = "landing_page"
# page ids become categorical model inputs and event fields: short and plain
_PAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Allow/deny lists for one canonical field (canonical values)."""

    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()

    def admits(self, value: str) -> bool:
        if value in self.deny:
            return False
        return self.allow is None or value in self.allow


def _rules(targeting: dict[str, Rule | list[str]]) -> dict[str, Rule]:
    return {TARGETING_FIELDS[key]: _canonical_rule(key, rule) for key, rule in targeting.items()}


def _fill(url: str, click_id: str) -> str:
    if not (click_id.isascii() and click_id.isalnum()):  # issued ids need no quoting
        click_id = quote(click_id, safe="-._~")
    return url.replace("{click_id}", click_id)


class LandingPage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One landing page of a campaign; ``url`` may hold ``{click_id}``."""

    id: str
    url: str
    active: bool = True
    targeting: dict[str, Rule | list[str]] = msgspec.field(default_factory=dict)

    def rules(self) -> dict[str, Rule]:
        """Targeting rules keyed by canonical profile field, values canonicalised."""
        return _rules(self.targeting)

    def url_for(self, click_id: str) -> str:
        """The URL for a click; the click id is percent-encoded (no header or URL injection)."""
        return _fill(self.url, click_id)


class Campaign(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, forbid_unknown_fields=True
):
    """One campaign of the catalogue: its pages in ``landing_pages``, or one in ``landing_page``."""

    id: str
    landing_page: str | None = None
    landing_pages: tuple[LandingPage, ...] | None = None
    payout: float
    active: bool = True
    targeting: dict[str, Rule | list[str]] = msgspec.field(default_factory=dict)
    # the campaign's vertical (its trade: "games", "finance"), a grouping key for learners
    vertical: str | None = None

    @property
    def pages(self) -> tuple[LandingPage, ...]:
        """The campaign's landing pages in catalogue order (the short form: one, ``default``)."""
        if self.landing_pages is not None:
            return self.landing_pages
        return (LandingPage(id=DEFAULT_PAGE_ID, url=self.landing_page or ""),)

    def page(self, page_id: str) -> LandingPage:
        """The page ``page_id``; KeyError when the campaign has none of that id."""
        for page in self.pages:
            if page.id == page_id:
                return page
        raise KeyError(f"campaign {self.id!r} has no landing page {page_id!r}")

    def rules(self) -> dict[str, Rule]:
        """Targeting rules keyed by canonical profile field, values canonicalised."""
        return _rules(self.targeting)

    def landing_page_for(self, click_id: str, page_id: str = DEFAULT_PAGE_ID) -> str:
        """The URL of page ``page_id`` for a click; the click id is percent-encoded."""
        if self.landing_pages is None and page_id == DEFAULT_PAGE_ID and self.landing_page:
            return _fill(self.landing_page, click_id)
        return self.page(page_id).url_for(click_id)


class Offer(NamedTuple):
    """A (campaign, landing page) pair: what the predictor chooses."""

    campaign: Campaign
    page: LandingPage


def offer_name(campaign_id: str, page_id: str) -> str:
    """How scores name an offer: its campaign id, ``<campaign>/<page>`` for a page
    other than ``default`` (a campaign id has no '/'), so that a catalogue of one
    page per campaign is keyed by campaign ids."""
    return campaign_id if page_id == DEFAULT_PAGE_ID else f"{campaign_id}/{page_id}"


def offers_of(campaigns: list[Campaign]) -> list[Offer]:
    """Every page of every campaign, campaign by campaign in catalogue order, pages in theirs."""
    return [Offer(campaign, page) for campaign in campaigns for page in campaign.pages]


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

    A catalogue without problems is parsed and validated once per content (its
    sha256) and its campaigns, frozen, are shared by every later call: readers
    poll the same file every cycle, and the outcome depends on the bytes alone.
    A catalogue with problems is checked every time (the problems name ``path``).
    """
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(
                f"{path}: cannot read the campaign catalogue: {exc.strerror}"
            ) from None
    key = hashlib.sha256(data).digest()
    known = _VALID_CATALOGS.get(key)
    if known is not None:
        return known, []
    try:
        entries = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ModelLoadError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ModelLoadError(f"{path}: expected a JSON list of campaigns")
    campaigns, problems = _validated(path, entries)
    if not problems:
        _VALID_CATALOGS.put(key, campaigns)
    return campaigns, problems


class _CatalogMemo:
    """The campaigns of the last few valid catalogues, by the sha256 of their bytes.

    Thread-safe (a predictor polls from a thread of its own); ``get`` hands out
    a new list each time, so a caller may reorder or extend its own.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, list[Campaign]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> list[Campaign] | None:
        with self._lock:
            campaigns = self._entries.get(key)
            if campaigns is None:
                return None
            self._entries.move_to_end(key)
            return list(campaigns)

    def put(self, key: bytes, campaigns: list[Campaign]) -> None:
        with self._lock:
            self._entries[key] = list(campaigns)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


# a few: the trainer reads the catalogue it is given and the live version's
_VALID_CATALOGS = _CatalogMemo(4)


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
    _check_targeting(campaign.targeting, f"campaign {campaign.id!r}")
    if (campaign.landing_page is None) == (campaign.landing_pages is None):
        raise ValueError(
            f"give exactly one of landing_page and landing_pages (campaign {campaign.id!r})"
        )
    if campaign.landing_page is not None:
        problem = landing_page_problem(campaign.landing_page)
        if problem is not None:
            raise ValueError(f"landing_page {problem} (campaign {campaign.id!r})")
        return campaign
    _check_pages(campaign.id, campaign.pages)
    return campaign


def _check_targeting(targeting: dict[str, Rule | list[str]], owner: str) -> None:
    unknown = set(targeting) - set(TARGETING_FIELDS)
    if unknown:
        raise ValueError(f"unknown targeting keys {sorted(unknown)} ({owner})")


def _check_pages(campaign_id: str, pages: tuple[LandingPage, ...]) -> None:
    seen: set[str] = set()
    for page in pages:
        owner = f"landing page {page.id!r} of campaign {campaign_id!r}"
        if not _PAGE_ID.fullmatch(page.id):
            raise ValueError(
                f"invalid landing page id {page.id!r} (campaign {campaign_id!r}): "
                "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        if page.id in seen:
            raise ValueError(f"duplicate {owner}")
        seen.add(page.id)
        problem = landing_page_problem(page.url)
        if problem is not None:
            raise ValueError(f"url {problem} ({owner})")
        _check_targeting(page.targeting, owner)
    if not any(page.active for page in pages):
        raise ValueError(f"campaign {campaign_id!r} has no active landing page")


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
