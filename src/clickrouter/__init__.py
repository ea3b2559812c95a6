"""clickrouter: real-time ad-campaign selection with thousands of per-campaign models.

``ModelBank`` is imported lazily so that light stages (the event consumer, the
simulator) do not pay for importing scikit-learn and pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickrouter.serving.bank import Decision, ModelBank

__all__ = ["Decision", "ModelBank", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("ModelBank", "Decision"):
        from clickrouter.serving import bank

        return getattr(bank, name)
    raise AttributeError(f"module 'clickrouter' has no attribute {name!r}")
