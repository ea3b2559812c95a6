"""Loading campaigns.json: a valid catalogue is parsed once per content, and reads the same."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickrouter.catalogue import _validated, load_catalog
from clickrouter.errors import ModelLoadError


def _entry(cid: str, payout: float = 1.0) -> dict[str, Any]:
    return {"id": cid, "payout": payout, "landing_page": f"https://x.example/{cid}"}


def _write(path: Path, entries: list[Any]) -> Path:
    path.write_bytes(msgspec.json.encode(entries))
    return path


def test_a_catalogue_read_again_gives_the_same_campaigns_in_a_list_of_its_own(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "campaigns.json", [_entry("a"), _entry("b", 2.0)])
    first, problems = load_catalog(path)
    first.append(first[0])  # the caller's own list
    again, more = load_catalog(path)
    assert problems == more == []
    assert [c.id for c in again] == ["a", "b"] and again[1].payout == 2.0


def test_a_file_rewritten_in_place_is_read_anew_whatever_its_size_and_mtime(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "campaigns.json", [_entry("a", 1.0)])
    stat = path.stat()
    assert load_catalog(path)[0][0].payout == 1.0
    _write(path, [_entry("a", 2.0)])  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_catalog(path)[0][0].payout == 2.0


def test_problems_are_reported_on_every_read_naming_that_path(tmp_path: Path) -> None:
    entries = [_entry("a"), _entry("a"), {"id": "b/c", "payout": 1.0}]
    for name in ("one.json", "two.json", "two.json"):
        campaigns, problems = load_catalog(_write(tmp_path / name, entries))
        assert [c.id for c in campaigns] == ["a"]
        assert len(problems) == 2 and all(p.startswith(f"{tmp_path / name}:") for p in problems)


def test_a_missing_or_malformed_catalogue_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read the campaign catalogue"):
        load_catalog(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_bytes(b"[{")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_catalog(tmp_path / "bad.json")
    with pytest.raises(ModelLoadError, match="expected a JSON list"):
        load_catalog(tmp_path / "x.json", b'{"id": "a"}')


_ENTRIES = st.lists(
    st.builds(
        _entry,
        st.sampled_from(["a", "b", "c", "d/e", ""]),
        st.sampled_from([0.0, 1.5, -1.0]),
    ),
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(catalogues=st.lists(_ENTRIES, min_size=1, max_size=5))
def test_a_read_equals_a_fresh_parse_whatever_was_read_before(
    tmp_path_factory: pytest.TempPathFactory, catalogues: list[list[dict[str, Any]]]
) -> None:
    """The memoised load against the reference (decode and validate every time)."""
    path = tmp_path_factory.mktemp("cat") / "campaigns.json"
    for entries in catalogues:
        data = msgspec.json.encode(entries)
        path.write_bytes(data)
        reference = _validated(path, msgspec.json.decode(data))
        assert load_catalog(path) == reference
        assert load_catalog(path, data) == reference
