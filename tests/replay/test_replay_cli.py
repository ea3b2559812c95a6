"""``clickrouter replay`` end to end: determinism, the report's numbers, bad input."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.replay.conftest import TINY_ARGS

from clickrouter.cli import build_parser, main
from clickrouter.cli.replay import settings_from_args
from clickrouter.demo.stages import training_settings
from clickrouter.training import TrainingSettings

CLICKS = 3000


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same two seeds twice: in two worker processes, then one after the other here
    (with a --scratch directory that does not exist yet)."""
    root = tmp_path_factory.mktemp("replay-cli")
    short = [*TINY_ARGS, "--clicks", str(CLICKS), "--days", "0.5"]
    assert main([*short, "--seeds", "0-1", "--jobs", "2", "--out", str(root / "a")]) == 0
    scratch = ["--scratch", str(root / "missing" / "scratch")]
    assert main([*short, "--seeds", "0,1", "--jobs", "1", *scratch, "--out", str(root / "b")]) == 0
    return root / "a", root / "b"


def test_a_missing_scratch_directory_is_created_and_left_empty(
    two_runs: tuple[Path, Path],
) -> None:
    scratch = two_runs[1].parent / "missing" / "scratch"
    assert scratch.is_dir()
    assert list(scratch.iterdir()) == []


def test_a_scratch_that_cannot_be_a_directory_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    # a file, a path through a file, a directory nothing can be created in
    for scratch in (tmp_path / "file", tmp_path / "file" / "below", Path("/proc")):
        out = tmp_path / "out"
        assert main([*TINY_ARGS, "--scratch", str(scratch), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("clickrouter replay: error: --scratch")
        assert repr(str(scratch)) in err and "Traceback" not in err
        assert not out.exists()


def test_same_world_seeds_and_settings_give_the_same_replay_json(
    two_runs: tuple[Path, Path],
) -> None:
    a, b = two_runs
    assert (a / "replay.json").read_bytes() == (b / "replay.json").read_bytes()
    report = json.loads((a / "replay.json").read_text())
    first, second = report["runs"]
    assert first["curves"]["live_all"] != second["curves"]["live_all"]  # seeds do differ


def test_the_report_has_the_demo_reports_numbers(two_runs: tuple[Path, Path]) -> None:
    a, _ = two_runs
    report = json.loads((a / "replay.json").read_text())
    assert report["seeds"] == [0, 1]
    for run in report["runs"]:
        assert run["clicks"] == CLICKS
        assert sum(run["curves"]["clicks"]) + run["no_fill"] == CLICKS
        for label in ("final", "overall"):
            per_1k = run[label]["per_1k"]
            assert per_1k["random"] < per_1k["oracle"]
            assert per_1k["live"] <= per_1k["oracle"]
            assert per_1k["single"] <= per_1k["oracle"]
            assert per_1k["campaign_random_page"] <= per_1k["oracle"]
            assert per_1k["campaign_first_page"] <= per_1k["oracle"]
            assert 0 < per_1k["oracle_reached"] <= per_1k["oracle"]
            share = run[label]["share_of_oracle"]
            assert share == pytest.approx(per_1k["live"] / per_1k["oracle"])
        points = sum(row["uplift_points"] for row in run["final_by_campaign"])
        assert points == pytest.approx(run["final"]["uplift_over_single"], abs=1e-9)
    final = report["summary"]["final"]["share_of_oracle"]
    shares = [run["final"]["share_of_oracle"] for run in report["runs"]]
    assert final["mean"] == pytest.approx(sum(shares) / 2)
    assert final["min"] == min(shares)
    assert report["runs"][[0, 1].index(final["worst_seed"])]["final"]["share_of_oracle"] == min(
        shares
    )
    assert (a / "replay.png").read_bytes()[:4] == b"\x89PNG"
    timing = json.loads((a / "replay-timing.json").read_text())
    assert timing["decisions_per_second"] > 0


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--seeds", "x"], "--seeds"),
        (["--seeds", "5-2"], "--seeds"),
        (["--days", "0"], "--days"),
        (["--clicks", "-4"], "--clicks"),
        (["--label-delay", "nan"], "--label-delay"),
        (["--policy", "best"], "--policy"),
        (["--thompson-profile-spread", "9"], "--thompson-profile-spread"),
        (["--max-pages", "0"], "--max-pages"),
        (["--train-window", "0"], "--train-window"),
        (["--exploration-seed", "-1"], "--exploration-seed"),
        (["--exploration-seed", "1.5"], "--exploration-seed"),
        (["--global-c", "0"], "--global-c"),
        (["--hierarchy-min-positives", "0"], "--hierarchy-min-positives"),
        (["--page-launch-share", "1.5"], "--page-launch-share"),
        (["--page-retire-share", "-0.1"], "--page-retire-share"),
    ],
)
def test_bad_options_are_refused_naming_the_option(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*TINY_ARGS, *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--world", "/nonexistent/world"], "--world"),
        (["--base-rate-min", "0.1", "--base-rate-max", "0.01"], "--base-rate-min"),
        (["--clicks", "3"], "--clicks"),
        (["--policy", "gamma-thompson", "--thompson-scale", "0"], "--thompson-scale"),
        (["--min-positives", "3", "--hierarchy-min-positives", "4"], "--min-positives (3)"),
        (["--page-launch-share", "0.7", "--page-retire-share", "0.5"], "--page-retire-share 0.5"),
    ],
)
def test_inconsistent_settings_are_one_line_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*TINY_ARGS, *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("clickrouter replay: error:")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_every_option_has_help_text() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    replay = commands["replay"]
    options = [a for a in replay._actions if a.option_strings and a.dest != "help"]
    assert len(options) > 20
    assert [a.option_strings for a in options if not a.help] == []


@pytest.mark.slow  # ~40 s: two spawned workers' start-up on the shared machine
def test_sigterm_stops_the_workers_and_removes_the_scratch(tmp_path: Path) -> None:
    """A run killed mid-way: exit 130, workers gone, no scratch left, no report."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    args = [*TINY_ARGS, "--clicks", "400000", "--days", "3", "--seeds", "0-1", "--jobs", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "clickrouter.cli", *args, "--out", str(tmp_path / "out"),
         "--scratch", str(scratch)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # both seeds' stores exist: workers are running
        if len(list(scratch.glob("replay-*/seed-*/store"))) == 2:
            break
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.2)
    else:
        pytest.fail("the workers never started")
    workers = _children(process.pid)
    assert len(workers) >= 2
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert b"Traceback" not in err
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)
    assert list(scratch.iterdir()) == []
    assert not (tmp_path / "out" / "replay.json").exists()


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def test_the_hierarchical_learners_options_reach_the_trainer() -> None:
    learner = ["--learner", "hierarchical", "--global-c", "0.5", "--hierarchy-min-positives", "2"]
    settings = settings_from_args(build_parser().parse_args([*TINY_ARGS, *learner]))
    trainer = TrainingSettings(**training_settings(settings.demo))
    assert trainer.learner == "hierarchical" and trainer.global_c == 0.5
    assert trainer.logistic_min_positives == 2  # below --min-positives' 5


def test_cold_at_prior_reaches_the_trainer_and_is_off_by_default() -> None:
    default = settings_from_args(build_parser().parse_args(TINY_ARGS))
    assert not TrainingSettings(**training_settings(default.demo)).cold_at_prior
    chosen = settings_from_args(build_parser().parse_args([*TINY_ARGS, "--cold-at-prior"]))
    assert TrainingSettings(**training_settings(chosen.demo)).cold_at_prior


def test_the_command_skips_the_propensity_estimate_its_records_go_with() -> None:
    """Each seed's records are removed with its directory: no propensity is read."""
    settings = settings_from_args(build_parser().parse_args(TINY_ARGS))
    assert settings.propensities is False
    assert settings.to_dict()["propensities"] is False  # replay.json says so


def test_the_page_schedule_options_reach_the_world() -> None:
    from clickrouter.replay.loop import load_world

    schedule = ["--max-pages", "5", "--page-launch-share", "0.4", "--page-retire-share", "0.3"]
    settings = settings_from_args(build_parser().parse_args([*TINY_ARGS, *schedule]))
    assert (settings.demo.page_launch_share, settings.demo.page_retire_share) == (0.4, 0.3)
    world = load_world(settings)
    assert world.pages.launch_offer and world.pages.retire_offer
