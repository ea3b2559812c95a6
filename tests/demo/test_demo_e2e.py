"""End to end: a small demo through the real processes, its report checked against the log.

The report is rebuilt here from the raw event-log lines (json, not the demo's
reader) and the world's own oracle API in float64 (not the demo's float32
scorer), so a bookkeeping or scoring mistake in the report cannot cancel out.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from clickrouter.demo.config import DemoConfig
from clickrouter.demo.run import run_demo
from clickrouter.profile import parse_timestamp
from clickrouter.sim.truth import sigmoid
from clickrouter.sim.world import World


def small_config(out: Path, **overrides: Any) -> DemoConfig:
    values: dict[str, Any] = {
        "out": out,
        "campaigns": 60,
        "minutes": 0.4,
        "rate": 150.0,
        "drivers": 1,
        "speedup": 3600.0,
        "retrain_hours": 2.0,
        "oracle_sample": 0,
        "bins": 6,
        "live": False,
        "seed": 3,
    }
    return DemoConfig(**(values | overrides))


def raw_events(directory: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lines = [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    return [e for e in lines if e["type"] == "click"], [e for e in lines if e["type"] == "sale"]


def expected_values(world: World, profiles: list[dict[str, Any]]) -> np.ndarray:
    """(profiles, offers) true expected values."""
    return world.true_proba(profiles) * world.payouts


def single_ranking(world: World, seed: int) -> np.ndarray:
    """The best-single-offer ranking, recomputed with the world's float64 oracle."""
    rng = np.random.default_rng([seed, 77])
    slots = world.audience.slots(world.draw_spread(rng, 10_000))
    values = sigmoid(world.truth.logits(slots)) * world.payouts
    eligible = world.eligible_slots(slots)
    average = (values * eligible).sum(0) / np.maximum(eligible.sum(0), 1)
    return np.argsort(-np.where(eligible.any(0), average, -1.0), kind="stable")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoConfig, dict[str, Any]]:
    config = small_config(tmp_path_factory.mktemp("demo") / "out")
    report = run_demo(config, Console(file=io.StringIO()))
    return config, report


def test_event_counts_match_the_log(demo: tuple[DemoConfig, dict[str, Any]]) -> None:
    config, report = demo
    clicks, sales = raw_events(config.out / "events")
    events = report["events"]
    assert events["clicks"] == len(clicks) == report["traffic"]["decisions"] > 1000
    assert events["sales"] == len(sales)
    assert events["revenue"] == pytest.approx(sum(s["revenue"] for s in sales))
    assert events["orphan_sales"] == 0
    assert sum(report["revenue"]["curves"]["clicks"]) == len(clicks)
    assert events["model_versions_served"] == len({c["model_version"] for c in clicks}) >= 2


def test_revenue_matches_the_oracle_on_the_logged_requests(
    demo: tuple[DemoConfig, dict[str, Any]],
) -> None:
    config, report = demo
    world = World.load(config.out / "world")
    clicks, _ = raw_events(config.out / "events")
    values = expected_values(world, [c["profile"] for c in clicks])
    eligible = world.eligible([c["profile"] for c in clicks])
    pages = [c.get("landing_page_id", "default") for c in clicks]
    chosen = np.asarray(world.offer_index([c["campaign_id"] for c in clicks], pages))
    rows = np.arange(len(clicks))
    order = single_ranking(world, config.seed)
    first = [next(c for c in order if eligible[i, c]) for i in rows]
    masked = np.where(eligible, values, 0)
    # the oracle's campaign, on its first eligible page and on a random eligible page
    campaign_of = world.offer_campaign
    right = campaign_of[masked.argmax(1)]
    on_right = eligible & (campaign_of[None, :] == right[:, None])
    mine = {
        "live": values[rows, chosen].mean(),
        "random": ((values * eligible).sum(1) / eligible.sum(1)).mean(),
        "single": values[rows, first].mean(),
        "campaign_first_page": values[rows, on_right.argmax(1)].mean(),
        "campaign_random_page": ((values * on_right).sum(1) / on_right.sum(1)).mean(),
        "oracle": masked.max(1).mean(),
    }
    assert len(set(pages)) > 1  # the demo's world runs several pages, and they are chosen
    shown = report["pages"]
    assert shown["offers"] == len(world.offers) > len(world.campaigns)
    offers = set(zip([c["campaign_id"] for c in clicks], pages, strict=True))
    assert shown["offers_shown"] == len(offers)
    assert shown["clicks_on_unknown_offers"] == 0 and (chosen >= 0).all()
    per_1k = report["revenue"]["overall"]["per_1k"]
    for policy, value in mine.items():
        assert per_1k[policy] == pytest.approx(1000 * value, rel=1e-4), policy
    share = report["revenue"]["overall"]["share_of_oracle"]
    assert share == pytest.approx(mine["live"] / mine["oracle"], rel=1e-4)


def test_final_uplift_is_split_by_the_campaigns_shown(
    demo: tuple[DemoConfig, dict[str, Any]],
) -> None:
    config, report = demo
    split, final = report["revenue"]["final_by_campaign"], report["revenue"]["final"]
    assert sum(r["uplift_points"] for r in split) == pytest.approx(final["uplift_over_single"])
    assert sum(r["click_share"] for r in split) == pytest.approx(1.0)
    shown = {c["campaign_id"] for c in raw_events(config.out / "events")[0]}
    named = [r for r in split if r["campaign_id"] is not None]
    assert named and {r["campaign_id"] for r in named} <= shown
    assert all(r["kind"] in ("logistic", "base_rate") for r in named)
    page = (config.out / "report.html").read_text()
    assert "Where the final quarter's uplift" in page and named[0]["campaign_id"] in page


def test_curves_bin_the_simulated_time_of_each_request(
    demo: tuple[DemoConfig, dict[str, Any]],
) -> None:
    config, report = demo
    clicks, sales = raw_events(config.out / "events")
    sim = np.array([parse_timestamp(c["raw"]["ts"]) for c in clicks])
    curves = report["revenue"]["curves"]
    assert curves["bin_start"][0] == pytest.approx(sim.min())
    assert curves["bin_end"][-1] == pytest.approx(sim.max(), abs=1e-3)
    # request i of a connection is stamped start + i / its rate x speedup: the span is the
    # planned one when the drivers keep their pace, shorter when a loaded machine slows them
    planned = config.minutes * 60 * config.speedup
    assert 0.5 * planned < sim.max() - sim.min() <= planned * 1.01
    pairs = zip(curves["realised"], curves["clicks"], strict=True)
    realised = sum((r or 0.0) * n / 1000 for r, n in pairs)
    assert realised == pytest.approx(sum(s["revenue"] for s in sales))


def test_predictor_and_training_health(demo: tuple[DemoConfig, dict[str, Any]]) -> None:
    config, report = demo
    traffic, server, training = report["traffic"], report["run"]["server"], report["training"]
    assert traffic["failed_requests"] == 0 and server["failed_5xx"] == 0
    assert traffic["no_fill"] == 0
    assert server["decisions"] == traffic["decisions"]
    assert server["reloads_ok"] >= 2 and server["reloads_rejected"] == 0
    assert training["published"] >= 1 and training["failed_fits"] == 0
    latency = traffic["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert sum(traffic["latency_histogram"]["counts"]) == traffic["decisions"]
    # the most-clicked campaigns (Thompson sampling may show fewer than top_campaigns)
    shown = {c["campaign_id"] for c in raw_events(config.out / "events")[0]}
    top = report["models"]["top"]
    assert len(top) == min(config.top_campaigns, len(shown))
    assert [t["clicks"] for t in top] == sorted((t["clicks"] for t in top), reverse=True)


def test_report_files(demo: tuple[DemoConfig, dict[str, Any]]) -> None:
    config, report = demo
    on_disk = json.loads((config.out / "report.json").read_text())
    assert on_disk["events"] == report["events"]
    page = (config.out / "report.html").read_text()
    for image in ("img/revenue.png", "img/latency.png"):
        assert image in page
        assert (config.out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for stage in ("predictor", "consumer", "trainer", "driver-0"):
        assert (config.out / "logs" / f"{stage}.log").exists()


@pytest.mark.slow
def test_longer_demo_learns_from_the_cold_start(tmp_path: Path) -> None:
    """Two minutes of traffic: the live policy climbs well above random and its start."""
    config = small_config(
        tmp_path / "out", campaigns=150, minutes=2.0, rate=600.0, drivers=2, bins=8, seed=0
    )
    report = run_demo(config, Console(file=io.StringIO()))
    curves, final = report["revenue"]["curves"], report["revenue"]["final"]["per_1k"]
    assert final["live"] > 5 * final["random"]
    assert final["live"] > 1.5 * curves["live"][0]
    assert report["traffic"]["failed_requests"] == 0


def _pids_of(needle: str) -> list[int]:
    """Processes whose command line contains ``needle`` (a unique temp path here)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and needle in cmdline:
            pids.append(int(proc.name))
    return pids


def test_a_dying_stage_ends_the_demo_with_its_name(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "clickrouter.cli", "demo", "--out", str(out), "--no-live"]
    argv += ["--campaigns", "30", "--minutes", "1", "--rate", "100", "--drivers", "1"]
    demo = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "drivers" / "go").exists():
            assert time.monotonic() < deadline and demo.poll() is None
            time.sleep(0.2)
        consumer = _pids_of(f"clickrouter.cli.consume consume --source {out}/events")
        assert len(consumer) == 1
        os.kill(consumer[0], signal.SIGKILL)
        _, stderr = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 2
    assert "consumer exited with status -9" in stderr and "Traceback" not in stderr
    time.sleep(0.5)
    assert _pids_of(str(out)) == []  # every other stage was stopped too
