"""The single writer of a dataset: atomic commits, recovery, compaction, retention.

Commit protocol (each step survives SIGKILL at any instant):

1. new Parquet files: temp name -> fsync -> rename (not yet listed anywhere);
2. sidecar JSONL lines (dead letters, late events) appended and fsynced;
3. consumer state: new immutable parts ``_state/part-<gen>.bin`` (written
   once, listed until the consumer lets them go) and the small state blob
   ``_state/state-<gen>.bin``: temp -> fsync -> rename;
4. ``_state/manifest.json`` replaced atomically: the commit point;
5. superseded files (old state blob, released parts, compacted inputs) deleted.

Recovery, when a writer opens the dataset: delete temp files and every data or
state file the manifest does not list, and truncate each sidecar to its
committed length. The dataset then is exactly the last commit.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from clickrouter.datastore.atomic import TMP_SUFFIX, fsync_dir, write_atomic
from clickrouter.datastore.manifest import (
    STATE_DIR,
    CampaignInfo,
    DataFile,
    Manifest,
    load_manifest,
    save_manifest,
)
from clickrouter.datastore.partition import (
    FILE_SCHEMA,
    PendingFiles,
    file_metadata,
    start_write_records,
    write_partition_file,
    write_records,
)
from clickrouter.datastore.schema import with_page_ids
from clickrouter.errors import ClickrouterError


class DatasetLocked(ClickrouterError):
    """Another process already writes this dataset (HTTP 409)."""

    status = 409


class DatasetWriter:
    """Owns ``root`` for writing; holds an exclusive lock until :meth:`close`."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.durable = durable
        (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
        self._lock = _acquire_lock(root / STATE_DIR / "writer.lock")
        self.manifest = load_manifest(root)
        self._recover()

    # -- recovery ---------------------------------------------------------
    def _recover(self) -> None:
        live = {f.path for f in self.manifest.files}
        for path in self.root.glob("campaign_id=*/date=*/*"):
            if path.relative_to(self.root).as_posix() not in live:
                path.unlink()
        for path in (self.root / STATE_DIR).iterdir():
            name = path.name
            rel = f"{STATE_DIR}/{name}"
            stale_state = (name.startswith("state-") and rel != self.manifest.state_file) or (
                name.startswith("part-") and rel not in self.manifest.state_parts
            )
            if name.endswith(TMP_SUFFIX) or stale_state:
                path.unlink()
        for name in self.sidecar_names():
            self._truncate_sidecar(name)

    def sidecar_names(self) -> list[str]:
        found = {p.name[1:-6] for p in self.root.glob("_*.jsonl")}
        return sorted(found | set(self.manifest.sidecars))

    def sidecar_path(self, name: str) -> Path:
        return self.root / f"_{name}.jsonl"

    def _truncate_sidecar(self, name: str) -> None:
        path = self.sidecar_path(name)
        committed = self.manifest.sidecars.get(name, 0)
        if path.exists() and path.stat().st_size > committed:
            with open(path, "r+b") as fh:
                fh.truncate(committed)

    # -- commit -----------------------------------------------------------
    def begin_records(self, records: pa.Table, source: Mapping[str, Any]) -> PendingFiles:
        """Start writing the next commit's ``records`` in the background; pass the
        result to :meth:`commit` (with the same ``source``) to publish them."""
        gen = self.manifest.generation + 1
        return start_write_records(self.root, records, gen, source, durable=self.durable)

    def commit(
        self,
        records: pa.Table | PendingFiles,
        *,
        source: Mapping[str, Any],
        state: bytes | None = None,
        counters: Mapping[str, int] | None = None,
        sidecars: Mapping[str, Iterable[bytes]] | None = None,
        state_part: bytes | None = None,
        keep_parts: Iterable[str] | None = None,
    ) -> Manifest:
        """Make ``records``, sidecar lines, ``state`` and ``source`` durable together.

        ``records`` may be :meth:`begin_records`' handle: its files were being
        written while the caller prepared the state; they are waited for here,
        after the state files, before the manifest.
        ``state_part`` adds one immutable state part (its name is returned as the
        last of ``manifest.state_parts``); ``keep_parts`` names the earlier parts
        still needed (None keeps them all): the others are deleted after the commit.
        """
        old = self.manifest
        gen = old.generation + 1
        pending = records if isinstance(records, PendingFiles) else None
        if pending is not None and (pending.generation != gen or pending.source != dict(source)):
            raise ClickrouterError("commit: records begun for another generation or source")
        if not isinstance(records, PendingFiles):
            new_files = write_records(self.root, records, gen, source, durable=self.durable)
        lengths = {**old.sidecars, **self._append_sidecars(sidecars or {})}
        parts = list(old.state_parts if keep_parts is None else keep_parts)
        released = sorted(set(old.state_parts) - set(parts))
        if state_part is not None:
            parts.append(self._write_state(gen, state_part, prefix="part"))
            assert parts[-1] == self.next_state_part()
        state_file = self._write_state(gen, state) if state is not None else old.state_file
        if pending is not None:
            new_files = pending.result()
        manifest = Manifest(
            generation=gen,
            files=[*old.files, *new_files],
            campaigns=_grow_campaigns(old.campaigns, new_files, gen),
            source=dict(source),
            state_file=state_file,
            state_parts=parts,
            sidecars=lengths,
            counters=dict(counters if counters is not None else old.counters),
        )
        stale: list[str | None] = [old.state_file] if old.state_file != state_file else []
        self._publish(manifest, drop=[*stale, *released])
        return manifest

    def discard(self, pending: PendingFiles) -> None:
        """Delete begun records whose commit failed (never once it was published)."""
        if self.manifest.generation < pending.generation:
            pending.discard(self.root)

    def _append_sidecars(self, sidecars: Mapping[str, Iterable[bytes]]) -> dict[str, int]:
        lengths: dict[str, int] = {}
        for name, lines in sidecars.items():
            data = b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines)
            if not data and name in self.manifest.sidecars:
                continue
            with open(self.sidecar_path(name), "ab") as fh:
                fh.write(data)
                fh.flush()
                if self.durable:
                    os.fsync(fh.fileno())
                lengths[name] = fh.tell()
        return lengths

    def _write_state(self, gen: int, state: bytes, *, prefix: str = "state") -> str:
        rel = f"{STATE_DIR}/{prefix}-{gen:010d}.bin"
        write_atomic(self.root / rel, state, durable=self.durable)
        return rel

    def _publish(self, manifest: Manifest, drop: Iterable[str | None]) -> None:
        save_manifest(self.root, manifest, durable=self.durable)
        self.manifest = manifest
        for rel in drop:
            if rel is not None:
                (self.root / rel).unlink(missing_ok=True)

    def load_state(self) -> bytes | None:
        if self.manifest.state_file is None:
            return None
        return (self.root / self.manifest.state_file).read_bytes()

    def next_state_part(self) -> str:
        """The name the next commit's ``state_part`` gets (relative to the root)."""
        return f"{STATE_DIR}/part-{self.manifest.generation + 1:010d}.bin"

    def load_state_part(self, rel: str) -> bytes:
        """One of ``manifest.state_parts`` (a path relative to the root)."""
        if rel not in self.manifest.state_parts:
            raise ClickrouterError(f"{self.root}: {rel!r} is not a committed state part")
        return (self.root / rel).read_bytes()

    # -- maintenance ------------------------------------------------------
    def compact(self, *, small_rows: int = 100_000) -> int:
        """Merge each partition's small files into one; returns files removed."""
        groups: dict[tuple[str, str], list[DataFile]] = {}
        for f in self.manifest.files:
            if f.rows < small_rows:
                groups.setdefault((f.campaign_id, f.date), []).append(f)
        merge = {key: files for key, files in groups.items() if len(files) > 1}
        if not merge:
            return 0
        gen = self.manifest.generation + 1
        meta = file_metadata(gen, self.manifest.source)
        replaced = {f.path for files in merge.values() for f in files}
        merged = [self._merge(cid, date, files, gen, meta) for (cid, date), files in merge.items()]
        kept = [f for f in self.manifest.files if f.path not in replaced]
        manifest = msgspec.structs.replace(self.manifest, generation=gen, files=kept + merged)
        self._publish(manifest, drop=sorted(replaced))
        return len(replaced) - len(merged)

    def _merge(
        self, cid: str, date: str, files: list[DataFile], gen: int, meta: dict[bytes, bytes]
    ) -> DataFile:
        # files written before pages lack landing_page_id: all of one layout first
        tables = [with_page_ids(pq.read_table(self.root / f.path)) for f in files]
        table = pa.concat_tables([t.select(FILE_SCHEMA.names) for t in tables])
        table = table.sort_by([("ts", "ascending"), ("click_id", "ascending")])
        rel = f"campaign_id={cid}/date={date}/part-{gen:010d}-c.parquet"
        data_file = write_partition_file(self.root, rel, table, meta, durable=self.durable)
        if self.durable:
            fsync_dir((self.root / rel).parent)
        return data_file

    def apply_retention(self, before_ts: float) -> int:
        """Drop files whose records all precede ``before_ts``; returns files dropped."""
        dropped = [f for f in self.manifest.files if f.max_ts < before_ts]
        if not dropped:
            return 0
        gen = self.manifest.generation + 1
        gone = {f.path for f in dropped}
        manifest = msgspec.structs.replace(
            self.manifest,
            generation=gen,
            files=[f for f in self.manifest.files if f.path not in gone],
            campaigns=_shrink_campaigns(self.manifest.campaigns, dropped, gen),
        )
        self._publish(manifest, drop=sorted(gone))
        return len(dropped)

    def close(self) -> None:
        if not self._lock.closed:
            self._lock.close()


def _acquire_lock(path: Path) -> Any:
    fh = open(path, "a+b")  # noqa: SIM115 - held open for the writer's lifetime
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise DatasetLocked(f"{path.parent.parent}: another process is writing it") from None
    return fh


def _grow_campaigns(
    old: Mapping[str, CampaignInfo], files: list[DataFile], gen: int
) -> dict[str, CampaignInfo]:
    out = dict(old)
    for f in files:
        rows = out[f.campaign_id].rows if f.campaign_id in out else 0
        out[f.campaign_id] = CampaignInfo(rows=rows + f.rows, changed_at=gen)
    return out


def _shrink_campaigns(
    old: Mapping[str, CampaignInfo], files: list[DataFile], gen: int
) -> dict[str, CampaignInfo]:
    out = dict(old)
    for f in files:
        rows = out[f.campaign_id].rows - f.rows
        out[f.campaign_id] = CampaignInfo(rows=rows, changed_at=gen)
    return {cid: info for cid, info in out.items() if info.rows > 0}
