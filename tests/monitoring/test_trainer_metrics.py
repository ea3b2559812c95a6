"""``clickrouter train --watch --metrics-port``: a real trainer process on a real
dataset, scraped over loopback while its cycles publish, then fail."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from clickrouter.modelstore import ModelStore
from monitoring.monitoring_support import clickrouter, free_port, scrape_until, stop, value
from training.conftest import World, write_catalog, write_many


def test_trainer_serves_cycles_decisions_and_live_quality(tmp_path: Path) -> None:
    world = World(seed=3)
    for cid, rate in (("a", 0.08), ("b", 0.05)):
        world.add_campaign(cid, rate)
    write_many(tmp_path / "data", {cid: world.records(cid, 4000) for cid in ("a", "b")})
    catalog = write_catalog(tmp_path / "campaigns.json", ["a", "b"])
    port = free_port()
    trainer = clickrouter(
        "train", "--data", str(tmp_path / "data"), "--store", str(tmp_path / "store"),
        "--catalog", str(catalog), "--watch", "--every", "0.5s", "--workers", "0",
        "--quiet", "--metrics-port", str(port),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        published = scrape_until(
            url,
            lambda s: (
                value(s, "clickrouter_training_cycles_total", outcome="published") == 1
                and (value(s, "clickrouter_training_cycles_total", outcome="unchanged") or 0) >= 1
            ),
            120,
            "a published cycle, then an unchanged one",
        )
        catalog.write_text("not a catalogue", encoding="utf-8")  # every next cycle fails
        failing = scrape_until(
            url,
            lambda s: (value(s, "clickrouter_training_cycles_total", outcome="failed") or 0) >= 1,
            60,
            "a failed cycle",
        )
    finally:
        code, stderr = stop(trainer)
    assert code in (0, -15), stderr
    live = ModelStore(tmp_path / "store").manifest(ModelStore(tmp_path / "store").current() or "")
    decisions = [r["decision"] for r in live["campaigns"].values()]
    kinds = [r["kind"] for r in live["campaigns"].values()]
    assert value(published, "clickrouter_training_models_total", decision="promoted") == (
        decisions.count("promoted")
    )
    for kind, decision in set(zip(kinds, decisions, strict=True)):
        expected = sum(k == kind and d == decision for k, d in zip(kinds, decisions, strict=True))
        assert value(
            published, "clickrouter_training_live_models", kind=kind, decision=decision
        ) == (expected)
    calibration = value(published, "clickrouter_training_live_calibration")
    auc = value(published, "clickrouter_training_live_roc_auc")
    assert calibration is not None and 0.5 < calibration < 2.0
    assert auc is not None and 0.5 < auc <= 1.0
    assert (value(published, "clickrouter_training_cycle_duration_seconds_count") or 0) >= 2
    assert value(published, "clickrouter_training_stage_seconds", stage="fit") is not None
    assert (value(published, "clickrouter_training_last_success_timestamp_seconds") or 0) > 0
    # the failure changed neither the live version nor what the gauges say of it
    assert value(failing, "clickrouter_training_live_calibration") == calibration


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        ("clickrouter.cli.consume", ["--metrics-port", "abc"], "--metrics-port: expected PORT"),
        ("clickrouter.cli.consume", ["--metrics-port", "70000"], "--metrics-port: expected PORT"),
        ("clickrouter.cli.consume", ["--metrics-port", "9", "--once"], "--metrics-port needs"),
        ("clickrouter.cli", ["--metrics-port", "9"], "--metrics-port needs --watch"),
    ],
)
def test_a_bad_metrics_port_is_a_message_naming_it(
    tmp_path: Path, module: str, args: list[str], message: str
) -> None:
    (tmp_path / "events").mkdir()
    if module == "clickrouter.cli":
        base = ["train", "--cold-start", "--store", str(tmp_path / "store")]
    else:
        base = ["consume", "--source", str(tmp_path / "events"), "--data", str(tmp_path / "d")]
    done = subprocess.run(
        [sys.executable, "-m", module, *base, *args], capture_output=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr.decode() and "Traceback" not in done.stderr.decode()


def test_a_metrics_port_in_use_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        consumer = clickrouter(
            "consume", "--source", str(tmp_path / "events"), "--data", str(tmp_path / "d"),
            "--metrics-port", str(port), "--quiet", "--in-process",
            module="clickrouter.cli.consume",
        )  # fmt: skip
        try:
            consumer.wait(timeout=60)
        finally:
            code, stderr = stop(consumer)
    assert code == 2, stderr
    assert f"--metrics-port {port}: cannot listen" in stderr and "Traceback" not in stderr
