"""ConsumerManager: event sources, offsets and the click/sale attribution join.

Public names load lazily: the predictor imports the Redis spool and stream
modules of this package to log its events, and must not pay for the consumer's
pyarrow (the ``consume`` extra, which a predictor install lacks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clickrouter.lazy import lazy_exports

if TYPE_CHECKING:
    from clickrouter.eventlog import EventLogWriter, EventWriter, open_writer
    from clickrouter.redislog import RedisStreamWriter
    from clickrouter.stream.consumer import ConsumerManager
    from clickrouter.stream.join import BatchAttributor
    from clickrouter.stream.local_source import LocalLogSource
    from clickrouter.stream.redis_stream import RedisStreamSource

__getattr__ = lazy_exports(
    __name__,
    {
        "BatchAttributor": "clickrouter.stream.join",
        "ConsumerManager": "clickrouter.stream.consumer",
        "EventLogWriter": "clickrouter.eventlog",
        "EventWriter": "clickrouter.eventlog",
        "LocalLogSource": "clickrouter.stream.local_source",
        "RedisStreamSource": "clickrouter.stream.redis_stream",
        "RedisStreamWriter": "clickrouter.redislog",
        "open_writer": "clickrouter.eventlog",
    },
)
__all__ = [
    "BatchAttributor",
    "ConsumerManager",
    "EventLogWriter",
    "EventWriter",
    "LocalLogSource",
    "RedisStreamSource",
    "RedisStreamWriter",
    "open_writer",
]
