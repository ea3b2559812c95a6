"""`clickrouter simulate` as a user runs it: files written, bad flags rejected cleanly.

In-process through ``clickrouter.cli.main`` (the console script's entry point):
a subprocess per case would spend its time importing every stage's CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clickrouter.catalogue import load_catalog
from clickrouter.cli import main
from clickrouter.events import ClickEvent, decode_event
from clickrouter.sim import World


def test_simulate_writes_world_catalogue_and_event_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--campaigns", "40", "--clicks", "3000", "--seed", "2", "--out", str(tmp_path)]
    assert main(["simulate", *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clicks"] == 3000 and summary["events_per_second"] > 0
    campaigns, problems = load_catalog(tmp_path / "campaigns.json")
    assert len(campaigns) == 40 and problems == []
    assert len(World.load(tmp_path).campaigns) == 40
    lines = (tmp_path / "events").glob("sim.*.jsonl")
    events = [decode_event(line) for p in lines for line in p.read_bytes().splitlines()]
    assert sum(isinstance(e, ClickEvent) for e in events) == 3000
    # a saved world can be reused for a second, identical run
    out = tmp_path / "b"
    assert (
        main(
            [
                "simulate",
                "--world",
                str(tmp_path),
                "--clicks",
                "3000",
                "--seed",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    first = sorted((tmp_path / "events").glob("*.jsonl"))[0].read_bytes()
    assert sorted((out / "events").glob("*.jsonl"))[0].read_bytes() == first


def test_simulate_with_pages_logs_the_page_of_each_click(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--campaigns", "30", "--max-pages", "4", "--clicks", "2000", "--out", str(tmp_path)]
    assert main(["simulate", *args]) == 0
    campaigns, problems = load_catalog(tmp_path / "campaigns.json")
    assert problems == [] and max(len(c.pages) for c in campaigns) > 1
    assert max(len(c.pages) for c in campaigns) <= 4
    world = World.load(tmp_path)
    lines = (tmp_path / "events").glob("sim.*.jsonl")
    clicks = [decode_event(line) for p in lines for line in p.read_bytes().splitlines()]
    clicks = [c for c in clicks if isinstance(c, ClickEvent)]
    offers = world.offer_index([c.campaign_id for c in clicks], [c.landing_page_id for c in clicks])
    assert (offers >= 0).all() and len({c.landing_page_id for c in clicks}) > 2


def test_simulate_schedules_pages_that_go_live_or_retire(tmp_path: Path) -> None:
    schedule = ["--page-launch-share", "0.5", "--page-retire-share", "0.5"]
    args = ["--campaigns", "30", "--max-pages", "5", "--clicks", "500", *schedule]
    assert main(["simulate", *args, "--out", str(tmp_path)]) == 0
    world = World.load(tmp_path)
    assert world.pages.launch_offer and world.pages.retire_offer
    assert len(world.change_times) > 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--clicks", "0", "--out", "OUT"], "--clicks"),
        (["--clicks", "ten", "--out", "OUT"], "--clicks"),
        (["--rate", "-1", "--target", "http://127.0.0.1:1"], "--rate"),
        (["--max-pages", "0", "--clicks", "5", "--out", "OUT"], "--max-pages"),
        (["--page-launch-share", "2", "--clicks", "5", "--out", "OUT"], "--page-launch-share"),
        (
            [
                *("--page-launch-share", "0.6", "--page-retire-share", "0.6"),
                *("--clicks", "5", "--out", "OUT"),
            ],
            "--page-retire-share 0.6",
        ),
        (["--clicks", "5"], "--out DIR"),
        (["--target", "http://127.0.0.1:1"], "--world"),
        (["--world", "OUT", "--clicks", "5", "--out", "OUT"], "world.json"),
    ],
)
def test_bad_flags_exit_2_with_a_message(
    args: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", *(str(tmp_path) if a == "OUT" else a for a in args)]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejects malformed flags itself
        code = int(exc.code or 0)
    stderr = capsys.readouterr().err
    assert code == 2 and fragment in stderr and "Traceback" not in stderr, stderr
