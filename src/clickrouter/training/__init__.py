"""TrainingManager: per-campaign fits, imbalance handling, evaluation, promotion."""

from clickrouter.training.data import ParquetTrainingData, TrainingData, open_training_data
from clickrouter.training.manager import TrainingManager
from clickrouter.training.report import CycleReport
from clickrouter.training.settings import TrainingSettings

__all__ = [
    "CycleReport",
    "ParquetTrainingData",
    "TrainingData",
    "TrainingManager",
    "TrainingSettings",
    "open_training_data",
]
