"""Arrow tables to and from IPC stream bytes (the consumer's state format)."""

from __future__ import annotations

import os

import pyarrow as pa


def use_system_allocator() -> None:
    """Make Arrow allocate with the C library's malloc in this process, unless
    ``ARROW_DEFAULT_MEMORY_POOL`` chooses. On the ingest path, combining and
    taking records' chunks is several times slower with the default mimalloc pool
    (mimalloc returns freed pages and faults them back in)."""
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())


def table_to_ipc(table: pa.Table) -> bytes:
    """One Arrow IPC stream; chunks are merged first (writing hundreds of small
    record batches costs several times the copy)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table.combine_chunks())
    return bytes(sink.getvalue())


def ipc_to_table(data: bytes) -> pa.Table:
    """The table in ``data`` (zero-copy: the table references ``data``)."""
    return pa.ipc.open_stream(data).read_all()
