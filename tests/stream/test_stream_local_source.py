"""LocalLogSource: follows segments, waits for partial lines, resumes from offsets."""

from __future__ import annotations

from pathlib import Path

from clickrouter.eventlog import EventLogWriter, open_writer
from clickrouter.events import SaleEvent, decode_event
from clickrouter.stream.local_source import LocalLogSource


def drain(source: LocalLogSource) -> list[bytes]:
    lines: list[bytes] = []
    while chunks := source.poll():
        lines.extend(line for chunk in chunks for line in chunk.lines)
    return lines


def test_partial_trailing_line_waits_until_completed(tmp_path: Path) -> None:
    seg = tmp_path / "w1.00000000.jsonl"
    seg.write_bytes(b'{"a":1}\n{"b":')
    source = LocalLogSource(tmp_path)
    assert drain(source) == [b'{"a":1}']
    with open(seg, "ab") as fh:
        fh.write(b"2}\n")
    assert drain(source) == [b'{"b":2}']
    assert source.position() == {"kind": "local", "segments": {seg.name: 16}}


def test_follows_rotated_segments_in_writer_order(tmp_path: Path) -> None:
    with EventLogWriter(tmp_path, "w1", segment_bytes=20) as writer:
        for i in range(5):
            writer.write_raw(b'{"n":%d,"pad":"xx"}\n' % i)
    source = LocalLogSource(tmp_path)
    assert drain(source) == [b'{"n":%d,"pad":"xx"}' % i for i in range(5)]


def test_writers_advance_together_one_chunk_each(tmp_path: Path) -> None:
    (tmp_path / "a.00000000.jsonl").write_bytes(b"a1\na2\n" * 10)
    (tmp_path / "b.00000000.jsonl").write_bytes(b"b1\nb2\n" * 10)
    source = LocalLogSource(tmp_path, chunk_bytes=6)
    first = [list(chunk.lines) for chunk in source.poll()]
    assert first == [[b"a1", b"a2"], [b"b1", b"b2"]]


def test_crashed_writers_segment_is_finished_by_its_successor(tmp_path: Path) -> None:
    (tmp_path / "w1.00000000.jsonl").write_bytes(b"one\ntorn-li")  # killed mid-line
    (tmp_path / "w1.00000001.jsonl").write_bytes(b"two\n")  # the restarted writer
    source = LocalLogSource(tmp_path)
    assert drain(source) == [b"one", b"torn-li", b"two"]  # the torn tail surfaces, once


def test_restore_resumes_right_after_committed_offsets(tmp_path: Path) -> None:
    (tmp_path / "w1.00000000.jsonl").write_bytes(b"l1\nl2\nl3\n")
    first = LocalLogSource(tmp_path, chunk_bytes=6)
    assert [list(c.lines) for c in first.poll()] == [[b"l1", b"l2"]]
    second = LocalLogSource(tmp_path)
    second.restore(first.position())
    assert drain(second) == [b"l3"]


def test_positions_name_file_and_byte_offset(tmp_path: Path) -> None:
    (tmp_path / "w1.00000000.jsonl").write_bytes(b"abc\nde\nf\n")
    (chunk,) = LocalLogSource(tmp_path).poll()
    assert [chunk.position_of(i) for i in range(3)] == [
        "w1.00000000.jsonl:0",
        "w1.00000000.jsonl:4",
        "w1.00000000.jsonl:7",
    ]


def test_a_writer_opened_on_a_directory_writes_a_log_the_source_reads(tmp_path: Path) -> None:
    sales = [SaleEvent(id=f"s{i}", click_id=f"k{i}", ts=1.0 + i, revenue=2.0) for i in range(3)]
    writer = open_writer(tmp_path, "predictor-1")
    assert isinstance(writer, EventLogWriter)
    for sale in sales:
        writer.write(sale)
    writer.close()
    assert [decode_event(line) for line in drain(LocalLogSource(tmp_path))] == sales
    assert [p.name for p in tmp_path.glob("*.jsonl")] == ["predictor-1.00000000.jsonl"]
