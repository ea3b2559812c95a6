"""Laplace-posterior Thompson sampling: the bank's variance table and the policy.

Real trainer-built pipelines (the trainer's transformer and pipeline
builders, coefficients fitted by sklearn's LogisticRegression on the
trainer's design), their posteriors computed and saved by the trainer's
module, in a real model directory loaded by the real bank.

* Per request and offer, the bank's logit variance equals the one computed
  directly from the campaign's posterior file on the model's own one-hot row
  (its page's column included); a campaign without a file is flagged.
* A hostile or foreign posterior file is refused with its name, and only its
  campaign falls back.
* The policy's draw equals a straightforward reference that scores every
  eligible offer (no pruning) from the posterior files' variances, its
  standard deviations times the temperature ``scale``.
* ``choose_scored`` row by row and ``choose_many`` make the same draws.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from clickrouter import ModelBank
from clickrouter.catalogue import PAGE_INPUT
from clickrouter.errors import InvalidInput, ModelLoadError
from clickrouter.posteriors import (
    LaplacePosterior,
    load_posterior,
    posterior_from_bytes,
    posterior_path,
)
from clickrouter.profile import profile_frame
from clickrouter.serving.engine.decision import DecisionPath
from clickrouter.serving.engine.fused import FusedDecider, decider_for
from clickrouter.serving.engine.holder import LiveBank
from clickrouter.serving.engine.laplace import LaplaceThompson, _laplace_draw
from clickrouter.serving.engine.policy import _seed_kernel, choose_many, choose_one, make_policy
from clickrouter.serving.posterior import logit_variances
from clickrouter.training.design import build_space
from clickrouter.training.models import base_rate_pipeline, feature_transformer, logistic_pipeline
from clickrouter.training.posterior import laplace_posterior, save_posterior
from fakes import random_profiles, write_model_directory

# campaign -> its pages; "base" keeps a base-rate model (no posterior file)
PAGES = {"paged": ("p1", "p2", "p3"), "single": ("s1",), "two": ("t1", "t2"), "base": ("b1",)}
PAYOUTS = {"paged": 1.0, "single": 2.0, "two": 1.5, "base": 1.2}


def fit_campaign(rng: np.random.Generator, frame: pd.DataFrame, transformer: Any) -> Any:
    """The trainer's way: sklearn's fit on the transformer's design, then its pipeline."""
    X = transformer.transform(frame)
    truth = expit(-1.5 + X @ rng.normal(0.0, 0.7, X.shape[1]))
    y = rng.random(len(truth)) < truth
    C = 0.5
    fit = LogisticRegression(C=C, solver="newton-cholesky").fit(X, y)
    return logistic_pipeline(transformer, fit.coef_[0], float(fit.intercept_[0]), C=C)


def build_version(root: Path, n_base: int) -> tuple[Path, dict[str, Any]]:
    """A model directory: three logistic campaigns with posteriors, then base rates."""
    rng = np.random.default_rng(7)
    profiles = random_profiles(rng, 1500)
    frame = profile_frame(profiles)
    space = build_space(frame)
    models: dict[str, Any] = {}
    posteriors: dict[str, LaplacePosterior] = {}
    pages_of = dict(PAGES)
    payouts = dict(PAYOUTS)
    for i in range(n_base):
        pages_of[f"more{i}"] = (f"m{i}",)
        payouts[f"more{i}"] = float(rng.uniform(0.5, 3.0))
    for cid, pages in pages_of.items():
        paged = len(pages) > 1
        transformer = feature_transformer(space, pages if paged else ())
        if cid == "base" or cid.startswith("more"):
            models[cid] = base_rate_pipeline(transformer, float(rng.uniform(0.01, 0.1)))
            continue
        rows = frame.copy()
        if paged:
            rows[PAGE_INPUT] = pd.Series(rng.choice(list(pages), len(rows)), dtype=object)
        models[cid] = fit_campaign(rng, rows, transformer)
        posteriors[cid] = laplace_posterior(models[cid], rows)
        save_posterior(posteriors[cid], posterior_path(root / f"{cid}.joblib"))
    catalog = [
        {
            "id": cid,
            "payout": payouts[cid],
            "landing_pages": [
                {"id": p, "url": f"https://x.example/{p}?k={{click_id}}"} for p in pages
            ],
        }
        for cid, pages in pages_of.items()
    ]
    write_model_directory(root, models, catalog)
    return root, {"models": models, "posteriors": posteriors, "pages": pages_of}


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return build_version(tmp_path_factory.mktemp("version"), 0)


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The same with 200 more base-rate campaigns: several groups of the draws' bounds."""
    return build_version(tmp_path_factory.mktemp("crowd"), 200)


@pytest.fixture(scope="module")
def live(version: tuple[Path, dict[str, Any]]) -> LiveBank:
    root, _ = version
    bank = ModelBank.from_directory(root)
    return LiveBank(bank=bank, directory=root, store_version=None, loaded_at=0.0, load_seconds=0.0)


def requests(n: int, seed: int) -> list[dict[str, Any]]:
    """Canonical profiles, some with values no model has seen."""
    profiles = random_profiles(np.random.default_rng(seed), n)
    for profile in profiles[::5]:
        profile["country"] = "Atlantis"
    return profiles


def direct_variance(
    version: tuple[Path, dict[str, Any]], profiles: list[dict[str, Any]], cid: str, page: str
) -> tuple[np.ndarray, float]:
    """(logit variance per profile, the page's share) from the posterior file itself."""
    root, found = version
    posterior = load_posterior(posterior_path(root / f"{cid}.joblib"))
    model = found["models"][cid]
    frame = profile_frame(profiles)
    if len(found["pages"][cid]) > 1:
        frame[PAGE_INPUT] = pd.Series([page] * len(frame), dtype=object)
    active = model.named_steps["features"].transform(frame).toarray()
    page_share = posterior.slot_variances().get((PAGE_INPUT, page), 0.0)
    return posterior.logit_variance(active), page_share


def test_the_banks_variance_is_the_posterior_files(
    version: tuple[Path, dict[str, Any]], live: LiveBank
) -> None:
    bank = live.bank
    table = logit_variances(bank, live.directory, {})
    assert table.problems == []
    profiles = bank.canonical(requests(120, 1))
    slots = bank.space.indices_many(profiles)
    got = np.array([table.logit_variance(row) for row in slots])
    for j, (cid, page) in enumerate(zip(bank.campaign_ids, bank.page_ids, strict=True)):
        if cid == "base":
            assert not table.known[j]
            assert (got[:, j] == 0).all()
            continue
        assert table.known[j]
        expected, page_share = direct_variance(version, profiles, cid, page)
        np.testing.assert_allclose(got[:, j], expected, rtol=1e-12, atol=0)
        assert table.page[j] == page_share
        assert (page_share > 0) == (len(PAGES[cid]) > 1)


def edit(path: Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.__setitem__("schema", "other"), "schema"),
        (lambda d: d["columns"][0]["categories"].__setitem__(0, "Atlantis"), "not in the bank"),
        (lambda d: d["columns"][0].__setitem__("column", "colour"), "not a profile field"),
        (lambda d: d["columns"][0]["variances"].__setitem__(0, -1.0), "finite positive"),
    ],
)
def test_a_refused_file_flags_only_its_campaign(
    version: tuple[Path, dict[str, Any]], tmp_path: Path, change: Any, message: str
) -> None:
    root, _ = version
    copy = tmp_path / "v"
    copy.mkdir()
    for path in root.iterdir():
        copy.joinpath(path.name).write_bytes(path.read_bytes())
    target = posterior_path(copy / "two.joblib")
    edit(target, change)
    bank = ModelBank.from_directory(copy)
    table = logit_variances(bank, copy, {})
    assert len(table.problems) == 1
    assert str(target) in table.problems[0] and message in table.problems[0]
    known = dict(zip(bank.campaign_ids, table.known.tolist(), strict=True))
    assert known == {"paged": True, "single": True, "two": False, "base": False}


def test_a_deeply_nested_file_is_refused(live: LiveBank, tmp_path: Path) -> None:
    path = tmp_path / "deep.posterior.json"
    with pytest.raises(ModelLoadError, match="nested too deep"):
        posterior_from_bytes(b"[" * 200_000, path)


def test_a_file_the_manifest_disowns_is_refused(live: LiveBank) -> None:
    table = logit_variances(live.bank, live.directory, {"single.posterior.json": "0" * 64})
    assert len(table.problems) == 1 and "sha256" in table.problems[0]
    assert not table.known[live.bank.column_of("single")]


@numba.njit(nogil=True)
def next_start(pool: int) -> int:
    return np.random.randint(0, pool)


def reference_winner(
    version: tuple[Path, dict[str, Any]],
    live: LiveBank,
    policy: LaplaceThompson,
    profile: dict[str, Any],
    proba: np.ndarray,
    start: int,
) -> int:
    """Every offer scored at ``start``: posterior files' variances, GammaThompson's factors."""
    bank = live.bank
    t = policy.prepare_laplace(live)
    g = t.gamma
    pool = t.normals.shape[1]
    best, best_score = -1, -1.0
    for j, (cid, page) in enumerate(zip(bank.campaign_ids, bank.page_ids, strict=True)):
        campaign = int(bank.offer_campaign_[j])
        at, page_at = (start + campaign) % pool, (start + j) % pool
        if cid not in version[1]["posteriors"]:
            score = proba[j] * g.payouts[j] * g.factors[g.level[j], at]
            score *= g.page_factors[g.page_level[j], page_at]
        else:
            total, page_share = direct_variance(version, [profile], cid, page)
            logit = np.log(proba[j] / (1 - proba[j]))
            noise = np.sqrt(total[0] - page_share) * t.normals[0, at]
            noise += np.sqrt(page_share) * t.normals[1, page_at]
            score = g.payouts[j] * expit(logit + policy.scale * noise)  # the temperature
        if score > best_score:
            best, best_score = j, score
    return best


@pytest.mark.parametrize(("which", "scale"), [("version", 1.0), ("crowd", 1.0), ("crowd", 0.3)])
def test_the_draw_is_the_reference_over_every_offer(
    which: str, scale: float, request: pytest.FixtureRequest
) -> None:
    version = request.getfixturevalue(which)
    root = version[0]
    bank = ModelBank.from_directory(root)
    live = LiveBank(bank=bank, directory=root, store_version=None, loaded_at=0.0, load_seconds=0.0)
    policy = LaplaceThompson(seed=5, scale=scale)
    t = policy.prepare_laplace(live)
    g = t.gamma
    bank = live.bank
    profiles = bank.canonical(requests(60, 2))
    decider = decider_for(bank)
    winners = set()
    for i, profile in enumerate(profiles):
        slots = bank.space.indices(profile)
        ranking = decider.decide(profile, slots, 1)
        _seed_kernel(1000 + i)
        start = next_start(t.normals.shape[1])
        _seed_kernel(1000 + i)
        column, _ = _laplace_draw(
            ranking.proba, ranking.mask, slots, t.variances, t.page_sd, t.known, t.normals,
            t.extremes, g.payouts, g.level, g.factors, g.campaign_of, g.page_level,
            g.page_factors, g.high, g.low, g.reach, policy.draws, policy.DRAW_BUDGET, True,
        )  # fmt: skip
        assert column == reference_winner(version, live, policy, profile, ranking.proba, start)
        winners.add(column)
    assert len(winners) > 2  # the draws differ: not a vacuous comparison


def test_batch_and_row_by_row_make_the_same_draws(live: LiveBank) -> None:
    bank = live.bank
    decider = decider_for(bank)
    assert isinstance(decider, FusedDecider)
    profiles = bank.canonical(requests(300, 3))
    batch = decider.decide_many(bank.space.indices_many(profiles))
    kept = type(batch)(*(a[batch.n_eligible > 0] for a in batch))
    policy = make_policy("laplace-thompson", 0.0, seed=11)
    rows = [
        choose_one(policy, live, kept.proba[i], kept.mask[i], int(kept.best[i]), 1, kept.slots[i])
        for i in range(len(kept.best))
    ]
    columns, propensity = choose_many(make_policy("laplace-thompson", 0.0, seed=11), live, *kept)
    assert columns.tolist() == [r[0] for r in rows]
    assert propensity.tolist() == [r[1] for r in rows]
    assert (columns != kept.best).any()  # it explores: not a vacuous comparison
    assert ((propensity > 0) & (propensity <= 1)).all()
    unestimated = make_policy("laplace-thompson", 0.0, seed=11)
    assert isinstance(unestimated, LaplaceThompson)
    unestimated.estimate_propensity = False
    skipped, nan = choose_many(unestimated, live, *kept)
    assert skipped.tolist() == columns.tolist()  # the same choices, row after row
    assert np.isnan(nan).all()


def test_the_decision_path_passes_the_slots(live: LiveBank) -> None:
    path = DecisionPath(make_policy("laplace-thompson", 0.0, seed=1))
    path.prepare(live)
    outcome = path.decide(live, live.bank.canonical([{"country": "FR"}])[0], "c1", None)
    assert outcome.policy == "laplace-thompson"
    assert (outcome.campaign_id, outcome.landing_page_id) in {
        (c, p) for c, pages in PAGES.items() for p in pages
    }


def test_the_policy_needs_slots(live: LiveBank) -> None:
    policy = LaplaceThompson(seed=1)
    proba = np.full(len(live.bank.offers), 0.1)
    mask = np.ones(len(proba), dtype=bool)
    with pytest.raises(ValueError, match="slots"):
        policy.choose_scored(live, proba, mask, 0, len(proba))
    with pytest.raises(InvalidInput, match="thompson_scale"):
        make_policy("laplace-thompson", 0.0, thompson_scale=0.0)
