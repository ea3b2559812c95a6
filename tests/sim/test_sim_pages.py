"""Worlds with landing pages: catalogues, per-offer truth and eligibility, schedule, old worlds."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from clickrouter.catalogue import DEFAULT_PAGE_ID, load_catalog, offers_of
from clickrouter.errors import InvalidInput
from clickrouter.events import ClickEvent, SaleEvent, decode_event
from clickrouter.profile import extract_profile
from clickrouter.sim import World, WorldConfig
from clickrouter.sim.driver import TrafficDriver
from clickrouter.sim.eventgen import generate_events

HOT = WorldConfig(base_rate_min=0.02, base_rate_max=0.2)  # as conftest's hot_world
# digests of what the code before landing pages wrote for World.generate(12, seed=5,
# config=HOT) and generate_events(..., 5000, seed=2): a one-page world must not move
ONE_PAGE_CATALOGUE = "af590520b2281992f9193bfaa32507d142b8e771a5a2b1ae8738c878a08e05f0"
ONE_PAGE_EVENTS = "0d6b3b58a37ef1595821233e7202c47f33722912060185aeebeba39656b5500f"
ONE_PAGE_TRUTH = "3f04e7bfbf4885e2a4cac84cfc83305cd030800a5c39f0e953be59065913cd31"


def _catalogue_digest(path: Path) -> str:
    campaigns, problems = load_catalog(path)
    assert problems == []
    rows = [
        (
            c.id,
            [p.url for p in c.pages],
            c.payout,
            c.active,
            sorted((k, r.allow, r.deny) for k, r in c.rules().items()),
        )
        for c in campaigns
    ]
    return hashlib.sha256(msgspec.json.encode(rows)).hexdigest()


def _events(directory: Path) -> list[ClickEvent | SaleEvent]:
    return [
        decode_event(line)
        for segment in sorted(directory.glob("*.jsonl"))
        for line in segment.read_bytes().splitlines()
    ]


def _events_digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for event in _events(directory):
        if isinstance(event, ClickEvent):
            row: list[Any] = [event.click_id, event.ts, event.campaign_id, event.landing_page]
            row += [event.propensity, event.profile.to_dict(), event.raw]
        else:
            row = [event.click_id, event.ts, event.revenue]
        digest.update(msgspec.json.encode(row))
    return digest.hexdigest()


def test_a_one_page_world_is_the_world_of_before(tmp_path: Path) -> None:
    world = World.generate(12, seed=5, config=HOT)
    world.save(tmp_path)
    generate_events(world, tmp_path, 5000, seed=2)
    assert _catalogue_digest(tmp_path / "campaigns.json") == ONE_PAGE_CATALOGUE
    truth = json.loads((tmp_path / "world.json").read_bytes())["truth"]
    assert hashlib.sha256(msgspec.json.encode(truth)).hexdigest() == ONE_PAGE_TRUTH
    assert _events_digest(tmp_path / "events") == ONE_PAGE_EVENTS
    assert all(c.landing_page is not None for c in world.campaigns)  # the short form
    assert world.offers == offers_of(world.campaigns) and len(world.offers) == 12


def test_a_world_file_written_before_pages_loads(tmp_path: Path) -> None:
    world = World.generate(12, seed=5, config=HOT)
    world.save(tmp_path)
    # what the code before pages wrote: no page fields, in the world or its config
    document = json.loads((tmp_path / "world.json").read_bytes())
    del document["pages"]
    document["config"] = {k: v for k, v in document["config"].items() if "page" not in k}
    (tmp_path / "world.json").write_text(json.dumps(document))
    loaded = World.load(tmp_path)
    profiles = [c for _, c in world.sample_requests(np.random.default_rng(3), 300)]
    np.testing.assert_array_equal(loaded.true_proba(profiles), world.true_proba(profiles))
    np.testing.assert_array_equal(loaded.eligible(profiles), world.eligible(profiles))
    assert loaded.config.max_pages == 1 and loaded.page_ids == [DEFAULT_PAGE_ID] * 12


def test_pages_leave_the_campaigns_their_truth_and_traffic(paged_world: World) -> None:
    config = msgspec.structs.replace(paged_world.config, max_pages=1)
    one_page = World.generate(60, seed=7, config=config)
    assert paged_world.truth.spec == one_page.truth.spec
    for a, b in zip(paged_world.campaigns, one_page.campaigns, strict=True):
        assert (a.id, a.payout, a.active, a.targeting) == (b.id, b.payout, b.active, b.targeting)
        assert a.pages[0].url == b.pages[0].url and a.pages[0].id == DEFAULT_PAGE_ID
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    assert paged_world.sample_requests(rng_a, 200) == one_page.sample_requests(rng_b, 200)


def test_paged_worlds_write_valid_catalogues_and_load_back(
    paged_world: World, tmp_path: Path
) -> None:
    paged_world.save(tmp_path)
    campaigns, problems = load_catalog(tmp_path / "campaigns.json")
    assert problems == [] and campaigns == paged_world.campaigns
    pages = Counter(len(c.pages) for c in campaigns)
    assert set(pages) <= {1, 2, 3, 4, 5} and len(pages) >= 3
    assert pages[1] + pages[2] > len(campaigns) / 2  # most campaigns run 1 or 2 pages
    assert any(p.targeting for c in campaigns for p in c.pages)
    assert any(not p.active for c in campaigns for p in c.pages)
    loaded = World.load(tmp_path)
    profiles = [c for _, c in paged_world.sample_requests(np.random.default_rng(2), 300)]
    np.testing.assert_array_equal(loaded.true_proba(profiles), paged_world.true_proba(profiles))
    assert loaded.pages == paged_world.pages


def test_a_world_file_that_does_not_fit_its_catalogue_is_refused(
    paged_world: World, tmp_path: Path
) -> None:
    paged_world.save(tmp_path)
    # the catalogue of the same campaigns with one page each: fewer offers than the truth has
    one_page = [
        msgspec.structs.replace(c, landing_page=c.pages[0].url, landing_pages=None)
        for c in paged_world.campaigns
    ]
    (tmp_path / "campaigns.json").write_bytes(msgspec.json.encode(one_page))
    with pytest.raises(InvalidInput, match="does not match"):
        World.load(tmp_path)


def test_offer_index_maps_campaign_and_page_ids(paged_world: World) -> None:
    ids = [o.campaign.id for o in paged_world.offers]
    pages = [o.page.id for o in paged_world.offers]
    index = paged_world.offer_index(ids, pages)
    np.testing.assert_array_equal(index, np.arange(len(paged_world.offers)))
    first = paged_world.offer_index(ids)  # no page ids: the "default" page of each
    np.testing.assert_array_equal(first, paged_world.offer_start[paged_world.offer_campaign])
    assert paged_world.offer_index(["c00000", "nope"], ["no-such-page", "default"]).tolist() == [
        -1,
        -1,
    ]


def test_per_offer_truth_is_the_campaign_logit_plus_the_page_effect(paged_world: World) -> None:
    profiles = [c for _, c in paged_world.sample_requests(np.random.default_rng(4), 400)]
    slots = paged_world.slots_of(profiles)
    campaign = paged_world.truth.campaign_logits(slots)
    offers = paged_world.truth.logits(slots)
    first = paged_world.offer_start  # the first page carries no effect
    np.testing.assert_allclose(offers[:, first], campaign, atol=1e-12)
    rows = np.arange(len(profiles))
    for offer in range(len(paged_world.offers)):
        one = paged_world.true_proba_slots(slots, np.full(len(profiles), offer))
        np.testing.assert_allclose(one, 1 / (1 + np.exp(-offers[rows, offer])), rtol=1e-12)
    assert paged_world.payouts.shape == (len(paged_world.offers),)
    assert (paged_world.payouts == [o.campaign.payout for o in paged_world.offers]).all()


def test_the_best_page_depends_on_the_country(paged_world: World) -> None:
    """Language pages win in their country and lose elsewhere: the best page moves."""
    world, vocab = paged_world, paged_world.audience.vocabulary.values
    n = len(vocab["country"]) - 1
    slots = {f: np.zeros(n, dtype=np.int64) for f in ("device", "browser", "os", "provider")}
    slots |= {"country": np.arange(1, n + 1), "local_hour": np.full(n, 12)}
    slots |= {"local_weekday": np.full(n, 2), "os": np.ones(n, dtype=np.int64)}
    logits = world.truth.logits(slots)
    moving = []
    for c, campaign in enumerate(world.campaigns):
        start, count = world.offer_start[c], world.offer_count[c]
        if count > 1:
            best = logits[:, start : start + count].argmax(axis=1)
            if len(set(best.tolist())) > 1:
                moving.append(campaign.id)
    assert len(moving) >= 5, moving


def test_offer_eligibility_follows_campaign_and_page_rules(paged_world: World) -> None:
    profiles = [c for _, c in paged_world.sample_requests(np.random.default_rng(5), 2000)]
    eligible = paged_world.eligible(profiles)
    for j, offer in enumerate(paged_world.offers):
        rules = offer.campaign.rules()
        page_rules = offer.page.rules()
        expected = np.array(
            [
                offer.campaign.active
                and offer.page.active
                and all(r.admits(p[f]) for f, r in rules.items())
                and all(r.admits(p[f]) for f, r in page_rules.items())
                for p in profiles
            ]
        )
        np.testing.assert_array_equal(eligible[:, j], expected, err_msg=str(offer.page))
    # page targeting bites: some active page of an active campaign is refused some profiles
    targeted = [
        j
        for j, o in enumerate(paged_world.offers)
        if o.page.targeting and o.page.active and o.campaign.active
    ]
    assert targeted and any(not eligible[:, j].all() for j in targeted)


def test_the_schedule_launches_and_retires_pages(paged_world: World) -> None:
    world, pages = paged_world, paged_world.pages
    assert pages.launch_offer and pages.retire_offer
    early, late = world.start_ts, world.start_ts + 8 * 86_400
    profiles = [c for _, c in world.sample_requests(np.random.default_rng(6), 50)]
    slots = world.slots_of(profiles)
    before = world.eligible_slots(slots, ts=np.full(len(profiles), early))
    after = world.eligible_slots(slots, ts=np.full(len(profiles), late))
    static = world.eligible_slots(slots)
    assert not before[:, pages.launch_offer].any() and not after[:, pages.retire_offer].any()
    np.testing.assert_array_equal(after[:, pages.launch_offer], static[:, pages.launch_offer])
    np.testing.assert_array_equal(before[:, pages.retire_offer], static[:, pages.retire_offer])
    # the catalogue to serve at a time marks the pages not live then as paused
    shown_early = np.array([o.page.active for o in offers_of(world.catalogue_at(early))])
    shown_late = np.array([o.page.active for o in offers_of(world.catalogue_at(late))])
    assert not shown_early[pages.launch_offer].any() and shown_early[pages.retire_offer].all()
    assert shown_late[pages.launch_offer].all() and not shown_late[pages.retire_offer].any()
    unscheduled = np.ones(len(world.offers), dtype=bool)
    unscheduled[[*pages.launch_offer, *pages.retire_offer]] = False
    catalogue = np.array([o.page.active for o in world.offers])
    np.testing.assert_array_equal(shown_early[unscheduled], catalogue[unscheduled])


def test_events_log_valid_offers_with_their_propensities(
    paged_world: World, tmp_path: Path
) -> None:
    report = generate_events(paged_world, tmp_path, 20_000, seed=3, chunk=3_000)
    clicks = [e for e in _events(tmp_path / "events") if isinstance(e, ClickEvent)]
    assert len(clicks) == report.clicks == 20_000
    offer = paged_world.offer_index(
        [c.campaign_id for c in clicks], [c.landing_page_id for c in clicks]
    )
    assert (offer >= 0).all()
    ts = np.array([c.ts for c in clicks])
    eligible = paged_world.eligible_slots(
        paged_world.slots_of([c.profile.to_dict() for c in clicks]), ts=ts
    )
    assert eligible[np.arange(len(clicks)), offer].all()
    np.testing.assert_allclose([c.propensity for c in clicks], 1 / eligible.sum(axis=1))
    for click, j in zip(clicks, offer.tolist(), strict=True):
        page = paged_world.offers[j].page
        assert click.landing_page == page.url_for(click.click_id)
    chosen_pages = Counter(c.landing_page_id for c in clicks)
    assert chosen_pages[DEFAULT_PAGE_ID] < len(clicks) and len(chosen_pages) > 5
    # the log spans the schedule: pages are chosen only while they are live
    pages = paged_world.pages
    launch = dict(zip(pages.launch_offer, pages.launch_ts, strict=True))
    retire = dict(zip(pages.retire_offer, pages.retire_ts, strict=True))
    assert ts[-1] - ts[0] > 3 * 86_400
    launched = [i for i, j in enumerate(offer.tolist()) if j in launch]
    retired = [i for i, j in enumerate(offer.tolist()) if j in retire]
    assert launched and all(ts[i] >= launch[offer[i]] for i in launched)
    assert retired and all(ts[i] < retire[offer[i]] for i in retired)


class _Answers(BaseHTTPRequestHandler):
    """Decides the last eligible offer, naming its page; every fifth names no such page."""

    world: World
    log: list[tuple[dict[str, Any], int]]

    def do_POST(self) -> None:
        raw = json.loads(self.rfile.read(int(self.headers["content-length"])))
        eligible = np.flatnonzero(self.world.eligible([extract_profile(raw)])[0])
        if len(eligible) == 0:
            return self._reply(404, {"error": "no eligible offer"})
        offer = int(eligible[-1])
        page = self.world.offers[offer].page.id
        if len(self.log) % 5 == 4:
            offer, page = -1, "no-such-page"
        self.log.append((raw, offer))
        body = {"click_id": f"k{len(self.log)}", "landing_page_id": page}
        return self._reply(200, body | {"campaign_id": self.world.offers[offer].campaign.id})

    def do_GET(self) -> None:
        self._reply(200, {"recorded": "sale"})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def answering(paged_world: World) -> Iterator[tuple[str, list[tuple[dict[str, Any], int]]]]:
    log: list[tuple[dict[str, Any], int]] = []
    handler = type("Handler", (_Answers,), {"world": paged_world, "log": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()


def test_the_driver_values_the_page_the_predictor_chose(
    paged_world: World, answering: tuple[str, list[tuple[dict[str, Any], int]]]
) -> None:
    url, log = answering
    driver = TrafficDriver(paged_world, url, rate=2000, speedup=1e7, drain_seconds=2)
    report = driver.run(200)
    decided = [(raw, offer) for raw, offer in log if offer >= 0]
    assert report.errors == len(log) - len(decided) > 0  # an unknown page is an error
    assert report.decisions == len(decided)
    profiles = [extract_profile(raw) for raw, _ in decided]
    chosen = np.array([offer for _, offer in decided])
    value = paged_world.true_proba(profiles)[np.arange(len(chosen)), chosen]
    expected = float((value * paged_world.payouts[chosen]).sum())
    assert report.expected_revenue == pytest.approx(expected, rel=1e-9)


def test_world_config_refuses_bad_page_knobs() -> None:
    for bad in ({"max_pages": 0}, {"max_pages": 99}, {"page_launch_share": 1.5}):
        with pytest.raises(InvalidInput, match="page"):
            WorldConfig(**bad).validated()  # type: ignore[arg-type]
