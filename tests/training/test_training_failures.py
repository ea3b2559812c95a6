"""A campaign whose fit raises becomes a 'failed' result, never an exception for the cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.training.design import build_space, column_offsets, encode_columns
from clickrouter.training.fitting import FitSettings, fit_chunk
from clickrouter.training.models import Transformers
from clickrouter.training.plan import Served, placement
from clickrouter.training.publish import space_spec
from clickrouter.training.settings import TrainingSettings
from clickrouter.training.tasks import campaign_tasks


def test_failing_fit_is_reported_and_replaced(world: Any, tmp_path: Path) -> None:
    world.add_campaign("a", 0.1)
    frame = world.records("a", 3000).assign(campaign_id="a")
    space = build_space(frame)
    tasks = campaign_tasks(frame, encode_columns(frame, space), ["a"], TrainingSettings(), {})
    # an impossible regularisation strength makes sklearn raise inside the worker
    broken = FitSettings(
        space_spec(space), int(column_offsets(space)[-1]), (-1.0,), 1.0, 20, 2.0, 1e-3, 0.02, 50
    )
    [result] = fit_chunk(broken, tasks)
    assert result.decision == "failed" and "C" in result.reason
    # with no served model to fall back on, the campaign still gets a model: the pooled rate
    fallback = placement(result, Transformers(space), Served(), "v1", 1e-3)
    assert fallback.model is not None and fallback.record["kind"] == "base_rate"
    proba = fallback.model.predict_proba(frame.iloc[:5][fallback.model.feature_names_in_])
    np.testing.assert_allclose(proba[:, 1], 1e-3)
    # with a served model, that file is carried over instead
    served_file = tmp_path / "a.joblib"
    served_file.write_bytes(b"served")
    served_record = {"kind": "logistic", "C": 0.3, "positives": 40, "trained_in": "v0"}
    served = Served("v0", {"a": served_file}, {"a": served_record})
    kept = placement(result, Transformers(space), served, "v1", 1e-3)
    assert kept.source == served_file and kept.model is None
    # its record describes the carried file, and says why the cycle's fit is not in it
    assert {k: kept.record[k] for k in served_record} == served_record
    assert kept.record["decision"] == "failed" and "C" in kept.record["reason"]
    assert kept.record["candidate"]["kind"] == "failed" and kept.record["data_version"] == "v1"
