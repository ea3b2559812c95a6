"""ConsumerManager: event sources, offsets and the click/sale attribution join.

Public names load lazily, so a producer that only imports
``clickrouter.stream.eventlog`` does not pay for pyarrow or redis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickrouter.stream.attribution import Attributor
    from clickrouter.stream.consumer import ConsumerManager
    from clickrouter.stream.eventlog import EventLogWriter
    from clickrouter.stream.fastattr import BatchAttributor
    from clickrouter.stream.local_source import LocalLogSource
    from clickrouter.stream.redis_stream import RedisStreamSink, RedisStreamSource
    from clickrouter.stream.sink import EventSink, open_sink

_LAZY = {
    "Attributor": "clickrouter.stream.attribution",
    "BatchAttributor": "clickrouter.stream.fastattr",
    "ConsumerManager": "clickrouter.stream.consumer",
    "EventLogWriter": "clickrouter.stream.eventlog",
    "EventSink": "clickrouter.stream.sink",
    "LocalLogSource": "clickrouter.stream.local_source",
    "RedisStreamSink": "clickrouter.stream.redis_stream",
    "RedisStreamSource": "clickrouter.stream.redis_stream",
    "open_sink": "clickrouter.stream.sink",
}
__all__ = [
    "Attributor",
    "BatchAttributor",
    "ConsumerManager",
    "EventLogWriter",
    "EventSink",
    "LocalLogSource",
    "RedisStreamSink",
    "RedisStreamSource",
    "open_sink",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clickrouter.stream' has no attribute {name!r}")
