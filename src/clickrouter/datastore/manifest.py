"""The commit record of a dataset: which files are live, and the consumer state.

``<root>/_state/manifest.json`` is the single commit point. A commit writes its
Parquet files and its state blob first, then replaces the manifest atomically;
everything the manifest does not list is garbage from an interrupted commit and
is removed when a writer next opens the dataset. Readers list data files from
the manifest, never from the directory, so they see whole commits only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from clickrouter.datastore.atomic import write_atomic
from clickrouter.errors import ClickrouterError

STATE_DIR = "_state"
MANIFEST_NAME = "manifest.json"
FORMAT = 1


class DataFile(msgspec.Struct, frozen=True):
    """One Parquet file of partition ``campaign_id=<campaign_id>/date=<date>``."""

    path: str  # relative to the dataset root
    campaign_id: str
    date: str
    rows: int
    min_ts: float
    max_ts: float


class CampaignInfo(msgspec.Struct, frozen=True):
    rows: int
    changed_at: int  # generation that last added or removed this campaign's records


class Manifest(msgspec.Struct, kw_only=True):
    format: int = FORMAT
    generation: int = 0
    files: list[DataFile] = msgspec.field(default_factory=list)
    campaigns: dict[str, CampaignInfo] = msgspec.field(default_factory=dict)
    source: dict[str, Any] = msgspec.field(default_factory=dict)  # opaque source offsets
    state_file: str | None = None  # consumer state blob, relative to the root
    # immutable state parts written once each (incremental consumer state), relative
    state_parts: list[str] = msgspec.field(default_factory=list)
    sidecars: dict[str, int] = msgspec.field(default_factory=dict)  # committed byte lengths
    counters: dict[str, int] = msgspec.field(default_factory=dict)


class CorruptManifest(ClickrouterError):
    status = 500


_decoder = msgspec.json.Decoder(Manifest)


def manifest_path(root: Path) -> Path:
    return root / STATE_DIR / MANIFEST_NAME


def load_manifest(root: Path) -> Manifest:
    """The last committed manifest, or an empty one for a new dataset."""
    try:
        data = manifest_path(root).read_bytes()
    except FileNotFoundError:
        return Manifest()
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CorruptManifest(f"{manifest_path(root)}: unreadable manifest: {exc}") from None


def save_manifest(root: Path, manifest: Manifest, *, durable: bool = True) -> None:
    write_atomic(manifest_path(root), msgspec.json.encode(manifest), durable=durable)
