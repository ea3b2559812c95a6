"""The same fits on local worker processes and on a real Dask cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from clickrouter.datastore import DataManager
from clickrouter.profile import CANONICAL_FIELDS, profile_frame
from clickrouter.training import TrainingManager, TrainingSettings

IDS = ["a", "b", "c", "d"]


@pytest.fixture
def dataset(tmp_path: Path, world: Any, write_dataset: Any, catalog_file: Any) -> dict[str, Any]:
    for i, cid in enumerate(IDS):
        world.add_campaign(cid, 0.04 if i % 2 == 0 else 2e-3)
        write_dataset(tmp_path / "data", cid, world.records(cid, 6000))
    catalog = catalog_file(tmp_path / "campaigns.json", IDS)
    rows = world.traffic(100, 0.0)[list(CANONICAL_FIELDS)].to_dict("records")
    for r in rows:
        r["local_hour"], r["local_weekday"] = int(r["local_hour"]), int(r["local_weekday"])
    return {"catalog": catalog, "profiles": profile_frame(rows)}


def _run(tmp_path: Path, dataset: dict[str, Any], name: str, **kwargs: Any) -> np.ndarray:
    workers = kwargs.pop("workers", 0)
    manager = TrainingManager(
        DataManager(tmp_path / "data"),
        tmp_path / name,
        dataset["catalog"],
        TrainingSettings(workers=workers),
        **kwargs,
    )
    report = manager.run_cycle()
    assert report.trained == len(IDS) and report.failed == 0
    root = manager.store.current_path()
    models = [joblib.load(root / f"{cid}.joblib") for cid in IDS]
    return np.column_stack([m.predict_proba(dataset["profiles"])[:, 1] for m in models])


def test_worker_processes_fit_what_the_caller_would(
    tmp_path: Path, dataset: dict[str, Any]
) -> None:
    inline = _run(tmp_path, dataset, "inline", workers=0)
    pooled = _run(tmp_path, dataset, "pooled", workers=2)
    np.testing.assert_allclose(pooled, inline, rtol=1e-12)


def test_dask_cluster_fits_what_the_caller_would(tmp_path: Path, dataset: dict[str, Any]) -> None:
    distributed = pytest.importorskip("distributed")
    inline = _run(tmp_path, dataset, "inline", workers=0)
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        on_dask = _run(tmp_path, dataset, "dask", dask_scheduler=cluster.scheduler_address)
    np.testing.assert_allclose(on_dask, inline, rtol=1e-12)


def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path, dataset: dict[str, Any]) -> None:
    from clickrouter.errors import ClickrouterError

    manager = TrainingManager(
        DataManager(tmp_path / "data"),
        tmp_path / "store",
        dataset["catalog"],
        TrainingSettings(),
        dask_scheduler="tcp://127.0.0.1:9",
        dask_timeout=2.0,
    )
    with pytest.raises(ClickrouterError, match="Dask scheduler"):
        manager.run_cycle()
    assert manager.store.current() is None


def test_a_local_dask_cluster_fits_what_the_caller_would_and_ends_with_the_cycle(
    tmp_path: Path, dataset: dict[str, Any]
) -> None:
    pytest.importorskip("distributed")
    from process_support import descendants, running

    inline = _run(tmp_path, dataset, "inline", workers=0)
    on_dask = _run(tmp_path, dataset, "dask-local", workers=1, dask_scheduler="local")
    np.testing.assert_allclose(on_dask, inline, rtol=1e-12)
    left = [p for p in descendants(os.getpid()) if running(p) and "spawn" in " ".join(p.cmdline())]
    assert left == []  # the cluster's worker processes ended with the cycle
