"""TrainingManager: per-campaign fits, imbalance handling, evaluation, promotion.

Names are imported lazily so that building the CLI's command list (which
imports ``clickrouter.training.cli``) does not import scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickrouter.training.data import ParquetTrainingData, TrainingData, open_training_data
    from clickrouter.training.manager import TrainingManager
    from clickrouter.training.report import CycleReport
    from clickrouter.training.settings import TrainingSettings

_HOMES = {
    "CycleReport": "clickrouter.training.report",
    "ParquetTrainingData": "clickrouter.training.data",
    "TrainingData": "clickrouter.training.data",
    "TrainingManager": "clickrouter.training.manager",
    "TrainingSettings": "clickrouter.training.settings",
    "open_training_data": "clickrouter.training.data",
}
__all__ = [
    "CycleReport",
    "ParquetTrainingData",
    "TrainingData",
    "TrainingManager",
    "TrainingSettings",
    "open_training_data",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'clickrouter.training' has no attribute {name!r}")
