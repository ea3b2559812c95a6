"""LineView and BatchLines: the same lines as splitting, cut out only when asked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clickrouter.stream.lines import BatchLines, LineView

PIECES = st.lists(st.sampled_from([b"", b"a", b"bc", b"\r", b'{"x":1}']), max_size=8)


def split_lines(data: bytes) -> list[bytes]:
    """What the log source used to do: split, without the empty tail."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    return lines


@given(PIECES, st.booleans())
def test_a_line_view_holds_the_split_lines(pieces: list[bytes], terminated: bool) -> None:
    data = b"\n".join(pieces) + (b"\n" if terminated else b"")
    if not data:
        assert len(LineView(data)) == 0
        return
    view, expected = LineView(data), split_lines(data)
    assert len(view) == len(expected)
    assert list(view) == expected and view[:] == expected and view[-1] == expected[-1]
    for i, line in enumerate(expected):
        start = view.offset(i)
        assert data[start : start + len(line)] == line
        assert start == sum(len(x) + 1 for x in expected[:i])


def test_batch_lines_concatenate_whole_and_picked_lines() -> None:
    lines = BatchLines()
    lines.add(LineView(b"a\nb\n"))
    lines.add([b"x", b"y", b"z"], [0, 2])
    lines.add([])
    lines.add(LineView(b"torn"))
    assert len(lines) == 5
    assert list(lines) == [b"a", b"b", b"x", b"z", b"torn"]
    assert lines[-1] == b"torn" and lines[1:3] == [b"b", b"x"]


@given(PIECES, st.booleans(), st.integers(0, 9), st.integers(0, 9))
def test_a_line_views_slices_and_joins_match_the_list(
    pieces: list[bytes], terminated: bool, lo: int, hi: int
) -> None:
    data = b"\n".join(pieces) + (b"\n" if terminated else b"")
    view, expected = LineView(data), split_lines(data) if data else []
    assert view[lo:hi] == expected[lo:hi] and view[lo:hi:2] == expected[lo:hi:2]
    lo, hi = min(lo, len(expected)), min(hi, len(expected))
    if lo < hi:
        assert view.joined(lo, hi) == b"\n".join(expected[lo:hi]) + b"\n"
