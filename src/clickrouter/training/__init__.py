"""TrainingManager: per-campaign fits, imbalance handling, evaluation, promotion.

The trainer comes with the ``train`` extra (pyarrow, rich, dask): any
module of this package raises :class:`~clickrouter.extras.MissingExtra` naming
it when the extra is not installed.
"""

from clickrouter.extras import require_extra

require_extra("train", "clickrouter.training", modules=("pyarrow", "rich"))

# after the check, so a missing extra is named rather than met as an ImportError
from clickrouter.training.data import (  # noqa: E402
    ParquetTrainingData,
    TrainingData,
    open_training_data,
)
from clickrouter.training.manager import TrainingManager  # noqa: E402
from clickrouter.training.report import CycleReport  # noqa: E402
from clickrouter.training.settings import TrainingSettings  # noqa: E402

__all__ = [
    "CycleReport",
    "ParquetTrainingData",
    "TrainingData",
    "TrainingManager",
    "TrainingSettings",
    "open_training_data",
]
