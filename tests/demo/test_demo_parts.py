"""The demo's own pieces: knob validation, histogram quantiles, the live view."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from clickrouter.cli.demo import config_from_args, register
from clickrouter.demo.config import DemoConfig
from clickrouter.demo.scrape import quantile
from clickrouter.demo.stages import training_settings
from clickrouter.demo.traffic import merge_reports
from clickrouter.errors import InvalidInput
from clickrouter.sim.eventgen import generate_events
from clickrouter.sim.world import World
from clickrouter.training import TrainingSettings


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--campaigns", "1"], "campaigns"),
        (["--policy", "softmax"], "policy"),
        (["--thompson-scale", "-1"], "thompson_scale"),
        (["--thompson-profile-spread", "2"], "thompson_profile_spread"),
        (["--policy", "gamma-thompson", "--thompson-scale", "0"], "thompson_scale"),
        (["--base-rate-min", "0.2", "--base-rate-max", "0.1"], "base_rate_min"),
        (["--recent-prior-sales", "-5"], "recent_prior_sales"),
        (["--recent-prior-sales", "inf"], "recent_prior_sales"),
        (["--pipeline", "0"], "pipeline"),
        (["--max-pages", "0"], "max_pages"),
        (["--global-c", "0"], "--global-c"),
        (["--min-positives", "3", "--hierarchy-min-positives", "4"], "hierarchy_min_positives"),
    ],
)
def test_bad_knob_exits_2_naming_it(tmp_path: Path, argv: list[str], named: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "clickrouter.cli", "demo", "--out", str(tmp_path), *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert named in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "world").exists()  # nothing started


def test_config_derives_wall_durations() -> None:
    config = DemoConfig(speedup=720, attribution_hours=1, retrain_hours=3, minutes=6)
    assert config.attribution_wall == pytest.approx(5.0)
    assert config.retrain_wall == pytest.approx(15.0)
    assert config.simulated_days == pytest.approx(3.0)
    assert config.label_delay_wall > config.attribution_wall + config.hold_seconds
    with pytest.raises(InvalidInput, match="threads"):
        DemoConfig(threads=0)
    with pytest.raises(InvalidInput, match="page_launch_share"):
        DemoConfig(page_launch_share=0.6, page_retire_share=0.6)


def test_the_demo_refuses_a_page_schedule_it_would_not_republish(tmp_path: Path) -> None:
    from rich.console import Console

    from clickrouter.demo.run import run_demo

    config = DemoConfig(out=tmp_path / "out", page_retire_share=0.2)
    with pytest.raises(InvalidInput, match="clickrouter replay"):
        run_demo(config, Console(quiet=True))
    assert not (tmp_path / "out").exists()  # refused before anything is built


def test_the_hierarchical_learners_knobs_reach_the_trainer() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    knobs = ["--learner", "hierarchical", "--global-c", "0.1", "--hierarchy-min-positives", "2"]
    config = config_from_args(parser.parse_args(["demo", *knobs]))
    trainer = TrainingSettings(**training_settings(config))
    assert (trainer.learner, trainer.global_c, trainer.logistic_min_positives) == (
        "hierarchical",
        0.1,
        2,
    )
    auto = config_from_args(parser.parse_args(["demo", "--learner", "hierarchical"]))
    assert TrainingSettings(**training_settings(auto)).global_c is None  # chosen per group


def test_training_knobs_reach_the_trainer_settings() -> None:
    settings = training_settings(DemoConfig(recent_prior_sales=20.0, min_positives=7))
    trainer = TrainingSettings(**settings)  # the trainer accepts every key the demo passes
    assert (trainer.recent_prior_sales, trainer.min_positives) == (20.0, 7)
    assert TrainingSettings(**training_settings(DemoConfig())).recent_prior_sales == 0.0  # off


@pytest.mark.parametrize("late", [True, False])
def test_late_sales_give_the_trainer_the_consumers_window(late: bool) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["demo", "--late-sales" if late else "--no-late-sales"])
    config = config_from_args(args)
    trainer = TrainingSettings(**training_settings(config))
    assert trainer.attribution_seconds == (config.attribution_wall if late else None)


def test_driver_reports_merge_with_and_without_the_oracle() -> None:
    one = {"requests": 3, "expected_revenue": 2.0, "oracle_revenue": 4.0, "efficiency": 0.5,
           "wall_seconds": 1.0, "sim_seconds": 720.0}  # fmt: skip
    two = one | {"requests": 5, "expected_revenue": 1.0, "oracle_revenue": 2.0, "wall_seconds": 2.0}
    merged = merge_reports([one, two])
    assert merged["requests"] == 8 and merged["wall_seconds"] == 2.0
    assert merged["efficiency"] == pytest.approx(3.0 / 6.0)
    blind = [r | {"oracle_revenue": None, "efficiency": None} for r in (one, two)]
    merged = merge_reports(blind)
    assert merged["oracle_revenue"] is None and merged["efficiency"] is None
    assert merged["expected_revenue"] == 3.0


def test_quantile_interpolates_within_buckets() -> None:
    buckets = {0.001: 50.0, 0.002: 90.0, 0.005: 100.0, float("inf"): 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.001)
    assert quantile(buckets, 0.7) == pytest.approx(0.0015)
    assert quantile(buckets, 0.95) == pytest.approx(0.0035)
    assert quantile({}, 0.5) != quantile({}, 0.5)  # NaN when empty


def test_live_view_renders_from_the_event_log(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from clickrouter.demo.live import LiveMonitor
    from clickrouter.demo.oracle import OracleScorer

    world = World.generate(20, seed=4)
    generate_events(world, tmp_path, 500)
    monitor = LiveMonitor(
        tmp_path / "events", tmp_path / "data", tmp_path / "cycles.jsonl", OracleScorer(world)
    )
    stats = monitor.refresh(None)
    assert stats.clicks == 500 and stats.expected > 0
    console = Console(file=io.StringIO(), width=100)
    console.print(monitor.render([], "traffic"))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "500 /" in text and "requests/s" in text and "model version" in text


def test_summary_signs_changes_but_not_the_share_of_the_oracle() -> None:
    from clickrouter.demo.html import ratio_rows

    ratios = {
        "uplift_over_random": 30.0,
        "uplift_over_single": -0.05,
        "uplift_over_first_page": 0.125,
        "share_of_oracle": 0.6,
    }
    rows = ratio_rows({"revenue": {"overall": ratios, "final": ratios}})
    assert rows == [
        ("uplift over uniform random", "+3000.0%", "+3000.0%"),
        ("uplift over best single offer", "-5.0%", "-5.0%"),
        ("uplift over right campaign, first page", "+12.5%", "+12.5%"),
        ("share of the oracle", "60.0%", "60.0%"),
    ]
