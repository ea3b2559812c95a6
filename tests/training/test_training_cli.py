"""``clickrouter train`` and ``clickrouter models list|show|rollback``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clickrouter.cli import main
from clickrouter.cli.train import duration
from clickrouter.modelstore import ModelStore


@pytest.fixture
def store_with_two_versions(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any
) -> dict[str, Any]:
    catalog = catalog_file(tmp_path / "campaigns.json", ["a", "b"])
    store = tmp_path / "store"
    assert main(["train", "--cold-start", "--store", str(store), "--catalog", str(catalog)]) == 0
    world.add_campaign("a", 0.05)
    write_dataset(tmp_path / "data", "a", world.records("a", 4000))
    args = ["train", "--data", str(tmp_path / "data"), "--store", str(store), "--quiet"]
    assert main([*args, "--catalog", str(catalog), "--workers", "0"]) == 0
    return {"store": store, "versions": ModelStore(store).versions()}


def test_train_publishes_and_models_list_shows_it(
    store_with_two_versions: dict[str, Any], capsys: Any
) -> None:
    store, versions = store_with_two_versions["store"], store_with_two_versions["versions"]
    assert len(versions) == 2 and ModelStore(store).current() == versions[1]
    capsys.readouterr()
    assert main(["models", "list", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert versions[0] in out and versions[1] in out


def test_models_show_and_rollback(store_with_two_versions: dict[str, Any], capsys: Any) -> None:
    store, (old, new) = store_with_two_versions["store"], store_with_two_versions["versions"]
    capsys.readouterr()
    assert main(["models", "show", new, "--store", str(store)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["live"] and summary["integrity"] == "ok" and summary["parent"] == old
    assert summary["decisions"] == {"promoted": 2}
    assert main(["models", "show", new, "--store", str(store), "--campaign", "a"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "logistic" and record["metrics"]["roc_auc"] is not None
    assert main(["models", "rollback", old, "--store", str(store)]) == 0
    assert ModelStore(store).current() == old


def test_bad_input_is_a_message_and_exit_2(
    store_with_two_versions: dict[str, Any], capsys: Any, tmp_path: Path
) -> None:
    store = str(store_with_two_versions["store"])
    capsys.readouterr()
    assert main(["models", "rollback", "v-nope", "--store", store]) == 2
    assert "no version 'v-nope'" in capsys.readouterr().err
    assert main(["models", "list", "--store", str(tmp_path)]) == 2
    assert "not a model store" in capsys.readouterr().err
    assert main(["train", "--store", store]) == 2
    assert "--data is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "d", "--store", store, "--every", "soon"])
    assert exit_info.value.code == 2
    assert "expected a duration" in capsys.readouterr().err


def test_missing_catalogue_is_a_clear_error(tmp_path: Path) -> None:
    store, catalog = str(tmp_path / "s"), str(tmp_path / "none.json")
    command = [sys.executable, "-m", "clickrouter.cli", "train", "--cold-start"]
    result = subprocess.run(
        [*command, "--store", store, "--catalog", catalog],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot read the campaign catalogue" in result.stderr
    assert "Traceback" not in result.stderr


def test_durations() -> None:
    assert duration("90") == 90 and duration("5m") == 300 and duration("7d") == 7 * 86400


def test_train_counts_late_sales_after_the_given_window(
    tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any
) -> None:
    catalog = catalog_file(tmp_path / "campaigns.json", ["a"])
    world.add_campaign("a", 0.001)
    write_dataset(tmp_path / "data", "a", world.records("a", 2000))
    args = ["train", "--data", str(tmp_path / "data"), "--store", str(tmp_path / "store")]
    assert main([*args, "--catalog", str(catalog), "--quiet", "--late-sales-after", "1h"]) == 0
    store = ModelStore(tmp_path / "store")
    manifest = store.manifest(store.current())
    assert manifest["settings"]["attribution_seconds"] == 3600
    assert manifest["delayed_feedback"]["window_seconds"] == 3600


def _three_sales(frame: Any) -> Any:
    """``frame`` with exactly its first three clicks converted."""
    sold = frame.index < 3
    return frame.assign(
        label=sold.astype("int8"),
        revenue=[10.0 if s else 0.0 for s in sold],
        sale_ts=frame["ts"].where(sold) + 60.0,
    )


def test_train_hierarchical_options_reach_the_published_version(
    tmp_path: Path, world: Any, write_datasets: Any, catalog_file: Any
) -> None:
    catalog = catalog_file(tmp_path / "campaigns.json", ["a", "b"])
    world.add_campaign("a", 0.05)
    world.add_campaign("b", 0.001)
    frames = {"a": world.records("a", 4000), "b": _three_sales(world.records("b", 2000))}
    write_datasets(tmp_path / "data", frames)
    args = ["train", "--data", str(tmp_path / "data"), "--store", str(tmp_path / "store")]
    learner = ["--learner", "hierarchical", "--shared-by", "all", "--hierarchy-min-positives", "3"]
    assert main([*args, "--catalog", str(catalog), "--quiet", "--workers", "0", *learner]) == 0
    store = ModelStore(tmp_path / "store")
    manifest = store.manifest(store.current())
    settings = manifest["settings"]
    assert settings["shared_by"] == "all" and settings["hierarchy_min_positives"] == 3
    # three sales: a base rate under --min-positives, a logistic model from 3
    assert manifest["campaigns"]["b"]["kind"] == "logistic"


def test_train_cold_at_prior_reaches_the_published_version(
    tmp_path: Path, world: Any, write_datasets: Any, catalog_file: Any
) -> None:
    catalog = catalog_file(tmp_path / "campaigns.json", ["a", "never"])
    world.add_campaign("a", 0.05)
    write_datasets(tmp_path / "data", {"a": world.records("a", 2000)})
    args = ["train", "--data", str(tmp_path / "data"), "--store", str(tmp_path / "store")]
    common = ["--catalog", str(catalog), "--quiet", "--workers", "0"]
    assert main(["train", "--store", str(tmp_path / "store"), "--cold-start", *common]) == 0
    assert main([*args, *common, "--cold-at-prior"]) == 0
    store = ModelStore(tmp_path / "store")
    manifest = store.manifest(store.current())
    assert manifest["settings"]["cold_at_prior"] is True
    # "a" has all the records: the pooled rate is its, and the campaign without any scores it
    assert manifest["campaigns"]["never"]["rate"] == manifest["pooled_rate"]


def test_hierarchy_min_positives_above_min_positives_names_both_options(
    tmp_path: Path, capsys: Any
) -> None:
    args = ["train", "--data", str(tmp_path), "--store", str(tmp_path / "store")]
    assert main([*args, "--min-positives", "5", "--hierarchy-min-positives", "6"]) == 2
    err = capsys.readouterr().err
    assert "--hierarchy-min-positives" in err and "--min-positives (5)" in err and "6" in err
    assert "Traceback" not in err
