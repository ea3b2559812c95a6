"""clickrouter: real-time ad-campaign selection with thousands of per-campaign models.

``ModelBank`` is imported lazily so that light stages (the event consumer, the
simulator) do not pay for importing scikit-learn and pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clickrouter.lazy import lazy_exports

if TYPE_CHECKING:
    from clickrouter.serving.bank import Decision, ModelBank

__all__ = ["Decision", "ModelBank", "__version__"]
__version__ = "0.1.0"

__getattr__ = lazy_exports(
    __name__, {"Decision": "clickrouter.serving.bank", "ModelBank": "clickrouter.serving.bank"}
)
