"""One model per campaign, its landing page a feature: real Parquet, real sklearn, real store.

The world: campaign ``lift`` runs pages ``a`` and ``b`` (``b`` sells three
times as often for every profile) and ``new``, which has no records yet;
``thin`` has the same pages and too few sales for a logistic fit; ``single``
is a campaign of the short form, one page. The same records are then trained
again as a dataset written before pages (files without ``landing_page_id``).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.special import logit

from clickrouter.datastore import DataManager
from clickrouter.eventlog import EventLogWriter
from clickrouter.events import CanonicalProfile, ClickEvent, SaleEvent, encode_event
from clickrouter.profile import CANONICAL_FIELDS, profile_frame
from clickrouter.serving.bank import ModelBank
from clickrouter.stream.consumer import ConsumerManager
from clickrouter.stream.local_source import LocalLogSource
from clickrouter.training import TrainingManager, TrainingSettings
from clickrouter.training.data import ParquetTrainingData
from clickrouter.training.fitting import smoothed_rate
from clickrouter.training.models import PAGE_INPUT
from training.conftest import T0, World, write_many, write_raw_layout
from training.test_training_cycle import canonical

PAGES = ("a", "b", "new")
LIFTS = {"a": 1.0, "b": 3.0}
SETTINGS = TrainingSettings(workers=0, min_positives=20, negative_rate=1.0)


def page_records(world: World, cid: str, n: int, lifts: dict[str, float]) -> pd.DataFrame:
    """Records of ``cid`` spread evenly over the pages of ``lifts``; a page's sale
    probability is the campaign's for the profile times the page's lift."""
    frame = world.traffic(n, T0)
    pages = np.array(list(lifts))[world.rng.integers(0, len(lifts), n)]
    lift = np.array([lifts[p] for p in pages])
    label = world.rng.random(n) < world.truths[cid].proba(frame) * lift
    return frame.assign(
        label=label.astype(np.int8),
        revenue=np.where(label, 10.0, 0.0),
        sale_ts=np.where(label, frame["ts"] + 60.0, np.nan),
        propensity=1.0,
        model_version="v0",
        landing_page_id=pages,
    )


def write_catalog(path: Path, pages: dict[str, tuple[str, ...]]) -> Path:
    """A catalogue; a campaign whose one page is ``default`` takes the short form."""
    entries: list[dict[str, Any]] = []
    for cid, ids in pages.items():
        if ids == ("default",):
            entries.append({"id": cid, "landing_page": f"https://x.example/{cid}", "payout": 1.0})
            continue
        listed = [{"id": p, "url": f"https://x.example/{cid}/{p}?k={{click_id}}"} for p in ids]
        entries.append({"id": cid, "payout": 1.0, "landing_pages": listed})
    path.write_text(pd.Series(entries).to_json(orient="values"), encoding="utf-8")
    return path


def train(data: Path, store: Path, catalog: Path) -> TrainingManager:
    manager = TrainingManager(DataManager(data), store, catalog, SETTINGS)
    assert manager.run_cycle().published
    return manager


def model_of(manager: TrainingManager, cid: str) -> Any:
    return joblib.load(manager.store.current_path() / f"{cid}.joblib")


def with_page(profiles: list[dict[str, Any]], page: str) -> pd.DataFrame:
    frame = profile_frame(profiles)
    frame[PAGE_INPUT] = page
    return frame


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pages")
    world = World(seed=11)
    world.add_campaign("lift", 0.03)
    world.add_campaign("thin", 0.002)
    world.add_campaign("single", 0.03)
    frames = {
        "lift": page_records(world, "lift", 30_000, LIFTS),
        "thin": page_records(world, "thin", 3_000, LIFTS),
        "single": world.records("single", 20_000),  # no page column: the default page
    }
    write_many(root / "data", frames)
    catalog = write_catalog(
        root / "campaigns.json", {"lift": PAGES, "thin": PAGES, "single": ("default",)}
    )
    manager = train(root / "data", root / "store", catalog)
    return {"root": root, "world": world, "frames": frames, "manager": manager, "catalog": catalog}


def test_a_page_that_sells_three_times_as_often_scores_above_its_sibling(
    paged: dict[str, Any],
) -> None:
    model = model_of(paged["manager"], "lift")
    assert list(model.feature_names_in_) == [*CANONICAL_FIELDS, PAGE_INPUT]
    profiles = canonical(paged["world"].traffic(300, T0))
    p_a = model.predict_proba(with_page(profiles, "a"))[:, 1]
    p_b = model.predict_proba(with_page(profiles, "b"))[:, 1]
    assert (p_b > p_a).all()
    # one page effect shared by every profile: the same odds ratio, near the truth's 3
    odds = logit(p_b) - logit(p_a)
    np.testing.assert_allclose(odds, odds[0], atol=1e-9)
    assert 2.3 < np.exp(odds[0]) < 4.0


def test_a_page_without_records_scores_as_its_campaign(paged: dict[str, Any]) -> None:
    model, frame = model_of(paged["manager"], "lift"), paged["frames"]["lift"]
    profiles = canonical(paged["world"].traffic(50, T0))
    z = {p: logit(model.predict_proba(with_page(profiles, p))[:, 1]) for p in (*PAGES, "zzz")}
    # the campaign's level: its pages' effects averaged over the traffic each had
    # (every row is kept with negative_rate 1, so each row weighs the same)
    n = frame["landing_page_id"].value_counts()
    campaign = (n["a"] * z["a"] + n["b"] * z["b"]) / (n["a"] + n["b"])
    np.testing.assert_allclose(z["new"], campaign, atol=1e-9)
    np.testing.assert_allclose(z["zzz"], z["new"], atol=1e-12)  # a page added after the fit


def test_a_thin_campaign_gets_a_rate_per_page_shrunk_towards_its_own(
    paged: dict[str, Any],
) -> None:
    manager, frame = paged["manager"], paged["frames"]["thin"]
    record = manager.store.manifest(manager.store.current())["campaigns"]["thin"]
    assert record["kind"] == "base_rate" and record["positives"] < SETTINGS.min_positives
    rate, model = record["rate"], model_of(manager, "thin")
    profiles = canonical(paged["world"].traffic(20, T0))
    for page in PAGES:
        rows = frame[frame["landing_page_id"] == page]
        expected = smoothed_rate(rows["label"].sum(), len(rows), rate, SETTINGS.prior_positives)
        got = model.predict_proba(with_page(profiles, page))[:, 1]
        np.testing.assert_allclose(got, expected, rtol=1e-9)
    new = model.predict_proba(with_page(profiles, "new"))[:, 1]
    np.testing.assert_allclose(new, rate, rtol=1e-9)  # no clicks: exactly the campaign


def test_the_manifest_records_the_sales_behind_each_page(paged: dict[str, Any]) -> None:
    manager, frames = paged["manager"], paged["frames"]
    records = manager.store.manifest(manager.store.current())["campaigns"]
    for cid in ("lift", "thin"):
        sold = frames[cid][frames[cid]["label"] == 1]["landing_page_id"].value_counts()
        expected = {"a": int(sold["a"]), "b": int(sold["b"]), "new": 0}
        assert records[cid]["page_positives"] == expected
        assert sum(expected.values()) == records[cid]["positives"]
    single = int(frames["single"]["label"].sum())
    assert records["single"]["page_positives"] == {"default": single}
    live = manager.store.manifest(manager.store.current())
    assert live["format_version"] == 2


def test_the_bank_scores_every_offer_as_the_model_does(paged: dict[str, Any]) -> None:
    version = paged["manager"].store.current_path()
    profiles = canonical(paged["world"].traffic(200, T0))
    with ModelBank.from_directory(version) as bank:
        offers = [(o.campaign.id, o.page.id) for o in bank.offers]
        listed = [*(("lift", p) for p in PAGES), *(("thin", p) for p in PAGES)]
        assert offers == [*listed, ("single", "default")]
        proba = bank.predict_proba(profiles)
        for j, (cid, page) in enumerate(offers):
            model = model_of(paged["manager"], cid)
            frame = with_page(profiles, page)[list(model.feature_names_in_)]
            expected = model.predict_proba(frame)[:, 1]
            np.testing.assert_allclose(proba[:, j], expected, rtol=1e-9, atol=1e-12)


def test_a_dataset_written_before_pages_trains_and_one_page_models_are_unchanged(
    paged: dict[str, Any],
) -> None:
    root = paged["root"]
    old = root / "old-data"
    shutil.copytree(root / "data", old)
    for path in DataManager(old).files():  # the files as an older consumer wrote them
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["landing_page_id"]), path)
    manager = train(old, root / "old-store", paged["catalog"])
    # the one-page campaign: the same model as from the dataset with pages, no page input
    then, now = model_of(manager, "single"), model_of(paged["manager"], "single")
    assert list(now.feature_names_in_) == list(CANONICAL_FIELDS)
    np.testing.assert_array_equal(then[-1].coef_, now[-1].coef_)
    assert then[-1].intercept_ == now[-1].intercept_
    # every old record went to ``default``, a page the catalogue no longer lists:
    # the profile effects are learnt, and every listed page scores as the campaign
    lift = model_of(manager, "lift")
    profiles = canonical(paged["world"].traffic(50, T0))
    scores = [lift.predict_proba(with_page(profiles, p))[:, 1] for p in PAGES]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-12)
    np.testing.assert_allclose(scores[0], scores[2], rtol=1e-12)
    record = manager.store.manifest(manager.store.current())["campaigns"]["lift"]
    assert record["kind"] == "logistic" and record["page_positives"] == dict.fromkeys(PAGES, 0)


def test_bare_files_of_the_layout_before_pages_read_as_the_default_page(
    tmp_path: Path, world: World
) -> None:
    world.add_campaign("c", 0.05)
    write_raw_layout(tmp_path, "c", world.records("c", 500))  # no landing_page_id
    frame = ParquetTrainingData(tmp_path).read_all()
    assert len(frame) == 500 and set(frame["landing_page_id"]) == {"default"}


def test_the_page_survives_consume_datastore_and_training(tmp_path: Path) -> None:
    profile = CanonicalProfile("FR", "mobile", "android", "chrome", "orange", 10, 2)
    rng = np.random.default_rng(5)
    lines, sold = [], {"a": 0, "b": 0, "new": 0}
    with EventLogWriter(tmp_path / "log", "w0") as writer:
        for i in range(4000):
            ts, page = T0 + i * 20.0, str(rng.choice(["a", "b"]))
            click = ClickEvent(f"e{i}", f"k{i}", ts, profile, "lift", "https://x/", 0.5, "v1", page)
            lines.append(encode_event(click))
            if rng.random() < (0.004 if page == "a" else 0.012):
                lines.append(encode_event(SaleEvent(f"s{i}", f"k{i}", ts + 60.0, 5.0)))
                sold[page] += 1
        for line in lines:
            writer.write_raw(line)
    with DataManager(tmp_path / "data", writable=True, durable=False) as dm:
        # a window far shorter than the log: every click but the last hour's is labelled
        stats = ConsumerManager(LocalLogSource(tmp_path / "log"), dm, window_seconds=600).run_once()
    assert stats["positives_labelled"] == sum(sold.values())
    catalog = write_catalog(tmp_path / "campaigns.json", {"lift": PAGES})
    manager = train(tmp_path / "data", tmp_path / "store", catalog)
    record = manager.store.manifest(manager.store.current())["campaigns"]["lift"]
    assert record["page_positives"] == sold
    model = model_of(manager, "lift")
    score = {p: model.predict_proba(with_page([profile.to_dict()], p))[0, 1] for p in PAGES}
    assert score["b"] > score["new"] > score["a"]


def test_a_trainer_that_ran_before_publishes_the_bytes_a_fresh_one_would(tmp_path: Path) -> None:
    """Transformers kept from an earlier cycle (same feature space) change no byte of
    a model file: ``p2``'s was a copy of ``p1``'s in the first cycle, and is fitted
    afresh by a new trainer in the second."""
    world = World(seed=5)
    pages = {"p1": ("a", "b"), "p2": ("c", "d")}
    lifts = {cid: dict(zip(ids, (1.0, 2.0), strict=True)) for cid, ids in pages.items()}
    for cid in pages:
        world.add_campaign(cid, 0.03)
    frames = {cid: page_records(world, cid, 4000, lifts[cid]) for cid in pages}
    write_many(tmp_path / "data", frames)
    catalog = write_catalog(tmp_path / "campaigns.json", pages)
    settings = dataclasses.replace(SETTINGS, guard_tolerance=1e6)  # every fit is published
    kept = TrainingManager(DataManager(tmp_path / "data"), tmp_path / "store", catalog, settings)
    assert kept.run_cycle().published
    shutil.copytree(tmp_path / "store", tmp_path / "fresh")
    write_many(tmp_path / "data", {"p2": page_records(world, "p2", 3000, lifts["p2"])}, "1")
    again = kept.run_cycle()
    fresh = TrainingManager(DataManager(tmp_path / "data"), tmp_path / "fresh", catalog, settings)
    other = fresh.run_cycle()
    assert again.trained == other.trained == again.promoted == 1
    ours, theirs = kept.store.path_of(again.version), fresh.store.path_of(other.version)
    first = kept.store.manifest(kept.store.versions()[0])["feature_space"]
    assert kept.store.manifest(again.version)["feature_space"] == first  # the same space
    assert (ours / "p2.joblib").read_bytes() == (theirs / "p2.joblib").read_bytes()
    assert model_of(kept, "p2").named_steps["model"].coef_.shape[1] > 2
