"""What the consumer reads from: a source of raw event lines with committable offsets.

A source hands out :class:`Chunk` s of raw lines. Its :meth:`Source.position`
covers every line handed out so far and is committed together with the data
those lines produced; after a restart, :meth:`Source.restore` resumes right
after the last committed line. :meth:`Source.acknowledge` runs after each
commit with the committed position (Redis Streams acknowledges the entries up
to it there; a log needs nothing): the consumer may have read past it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from clickrouter.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Chunk:
    """Raw event lines (without newlines) read in one go from one place.

    ``data`` is the same lines joined by ``\\n`` when the source has it for
    free (fast batch decoding); ``position_of(i)`` names line ``i``'s origin
    for dead letters, e.g. ``"w1.00000003.jsonl:4096"`` or a stream entry id.
    """

    lines: Sequence[bytes]  # a list, or a LineView over ``data``
    data: bytes | None
    position_of: Callable[[int], str]


class Source(Protocol):
    def restore(self, position: Mapping[str, Any]) -> None: ...

    def poll(self) -> list[Chunk]:
        """The next lines available now; ``[]`` when there is nothing new."""
        ...

    def position(self) -> dict[str, Any]: ...

    def acknowledge(self, position: Mapping[str, Any] | None = None) -> None:
        """Release what ``position`` (an earlier :meth:`position`) covers, once
        committed; None: everything handed out so far."""
        ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def check_kind(position: Mapping[str, Any], kind: str, describe: str) -> None:
    """Refuse to resume a dataset from offsets another kind of source committed."""
    found = position.get("kind")
    if found is not None and found != kind:
        raise InvalidInput(
            f"--data holds offsets of a {found!r} source, not of {describe}: "
            "use a fresh --data directory for another source"
        )
