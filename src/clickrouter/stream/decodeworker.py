"""Decode batches in a second process, so parsing runs beside the join.

Parsing JSON and building the click columns is about half of the consumer's
CPU and holds the GIL, so a thread cannot overlap it; a worker process can.
The consumer sends each batch's raw chunk bytes; the worker answers with the
batch's columns (Arrow IPC), ids, timestamps and refused lines (reasons only:
the consumer names positions). The worker is stateless and answers batches in
the order sent, so the consumer joins exactly the batches it would have
decoded itself. It exits when its input closes, and when the consumer
(whose pid is its argument) ends, even mid-batch or if another process
holds its input open. Until it has started (imports take a few hundred
milliseconds), the consumer decodes in-process.

The consumer's side, :class:`~clickrouter.stream.pipeline.DecodePipeline`,
keeps a few batches in flight (see there).

``consume`` uses it when the process may run on two CPUs (``--in-process``
turns it off): it costs some CPU (the batch crosses a pipe, columns are read
back, the worker imports its own libraries) and wins wall time only with a
second core free (see docs/benchmarks.md).

Wire format: frames of an 8-byte little-endian length and a msgpack body.
"""

from __future__ import annotations

import contextlib
import struct
import sys
from typing import IO

import msgspec
import numpy as np

from clickrouter.errors import ClickrouterError
from clickrouter.stream.arrowio import ipc_to_table, table_to_ipc, use_system_allocator
from clickrouter.stream.batch import EventBatch
from clickrouter.stream.decode import ChunkDecoder
from clickrouter.stream.lines import BatchLines, LineView
from clickrouter.stream.source import Chunk

_LEN = struct.Struct("<Q")
READY = b"R"


class Decoded(msgspec.Struct, frozen=True, array_like=True):
    """One decoded batch as the worker sends it."""

    chunk_no: bytes  # int32 per event: which chunk of the batch
    line_no: bytes  # int32 per event: which line of that chunk
    ids: list[str]
    click_ids: list[str]
    ts: bytes  # float64 per event
    is_click: bytes  # bool per event
    clicks: bytes  # Arrow IPC, CLICK_SCHEMA
    dead: list[tuple[int, int, str]]
    repeated_ids: list[str]
    repeated_click_ids: list[str]


class DecodeWorkerDied(ClickrouterError):
    status = 500


def write_frame(out: IO[bytes], body: bytes) -> None:
    out.write(_LEN.pack(len(body)))
    out.write(body)
    out.flush()


def read_frame(src: IO[bytes]) -> bytes | None:
    head = src.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    (size,) = _LEN.unpack(head)
    body = src.read(size)
    return body if len(body) == size else None


def _no_position(i: int) -> str:
    return str(i)  # the consumer names positions; the worker only gives line numbers


Frame = list[tuple[bytes | None, list[bytes]]]  # per chunk: its bytes, or its lines


def encode_batch(decoder: ChunkDecoder, frame: Frame) -> bytes:
    """The worker's answer for one batch (per chunk: its joined bytes, or its
    lines when a line holds a newline and the bytes cannot be split)."""
    chunks = [
        Chunk(LineView(data), data, _no_position)
        if data is not None
        else Chunk(lines, None, _no_position)
        for data, lines in frame
    ]
    batch, origin, dead = decoder.parse(chunks)
    where = np.asarray(origin, dtype=np.int32).reshape(-1, 2)
    return msgspec.msgpack.encode(
        Decoded(
            chunk_no=where[:, 0].tobytes(),
            line_no=where[:, 1].tobytes(),
            ids=batch.ids,
            click_ids=batch.click_ids,
            ts=np.asarray(batch.ts, dtype=np.float64).tobytes(),
            is_click=np.asarray(batch.is_click, dtype=bool).tobytes(),
            clicks=table_to_ipc(batch.clicks),
            dead=dead,
            repeated_ids=list(batch.repeated_ids),
            repeated_click_ids=list(batch.repeated_click_ids),
        )
    )


def decode_answer(
    body: bytes, chunks: list[Chunk]
) -> tuple[EventBatch, list[tuple[int, int, str]]]:
    """Rebuild the batch in the consumer from the worker's answer."""
    got = msgspec.msgpack.decode(body, type=Decoded)
    chunk_no = np.frombuffer(got.chunk_no, dtype=np.int32)
    line_no = np.frombuffer(got.line_no, dtype=np.int32)
    raws = _raws(chunks, chunk_no, line_no)
    is_click = np.frombuffer(got.is_click, dtype=bool)
    batch = EventBatch(
        events=None,
        raws=raws,
        ts=np.frombuffer(got.ts, dtype=np.float64).tolist(),
        ids=got.ids,
        click_ids=got.click_ids,
        is_click=is_click.tolist(),
        click_pos=np.flatnonzero(is_click),
        clicks=ipc_to_table(got.clicks),
        repeated_ids=set(got.repeated_ids),
        repeated_click_ids=set(got.repeated_click_ids),
        clicks_ipc=got.clicks,
    )
    return batch, [(n, i, reason) for n, i, reason in got.dead]


def _raws(chunks: list[Chunk], chunk_no: np.ndarray, line_no: np.ndarray) -> BatchLines:
    """The lines of the batch's events, chunk by chunk (chunk numbers never
    decrease), as a view: only the few the join needs are cut out."""
    raws = BatchLines()
    bounds = np.searchsorted(chunk_no, np.arange(len(chunks) + 1)).tolist()
    for n, chunk in enumerate(chunks):
        lo, hi = bounds[n], bounds[n + 1]
        raws.add(chunk.lines, None if hi - lo == len(chunk.lines) else line_no[lo:hi].tolist())
    return raws


def serve(src: IO[bytes], out: IO[bytes]) -> None:
    """The worker's loop: answer each frame until the input closes."""
    decoder = ChunkDecoder()
    out.write(READY)
    out.flush()
    while (body := read_frame(src)) is not None:
        frame = msgspec.msgpack.decode(body, type=Frame)
        write_frame(out, encode_batch(decoder, frame))


if __name__ == "__main__":
    import gc

    from clickrouter.processes import exit_with_parent

    if len(sys.argv) > 1:
        exit_with_parent(int(sys.argv[1]))
    gc.disable()  # short-lived acyclic objects only (see consumer._gc_paused)
    use_system_allocator()
    with contextlib.suppress(BrokenPipeError):  # the consumer went away
        serve(sys.stdin.buffer, sys.stdout.buffer)
