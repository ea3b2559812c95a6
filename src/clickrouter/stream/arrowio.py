"""Arrow tables to and from IPC stream bytes (the consumer's state format)."""

from __future__ import annotations

import pyarrow as pa


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
