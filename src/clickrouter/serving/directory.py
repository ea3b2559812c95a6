"""Reading a model directory: catalogue, model files and manifest, all checked.

A model directory holds ``campaigns.json``, one ``<campaign_id>.joblib`` (or
``.skops``) per campaign, an optional ``manifest.json`` (version, feature
spec, metrics, sha256 per file) and optionally its signature
``manifest.json.sig``. Every problem found is collected with the file it
concerns, so one pass tells the operator everything that is wrong.

A ``.joblib`` file is unpickled only when its source is trusted
(:mod:`clickrouter.serving.trust`): each file is opened once, judged on the
open file's owner and mode (and its directories'), and loaded from the bytes
read through that same descriptor, so nothing can be swapped in between.

With a :class:`~clickrouter.serving.memo.CompileMemo`, a file whose bytes match
a memo entry is not unpickled: the entry stands for the model (it was made from
the same bytes, which passed every check then and would pass them again).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from clickrouter.errors import ModelLoadError
from clickrouter.modelstore.signing import SIGNATURE, signature_problem
from clickrouter.serving.catalog import Campaign, load_catalog
from clickrouter.serving.loading import (
    MODEL_SUFFIXES,
    PICKLE_SUFFIXES,
    ModelFileError,
    load_model,
)
from clickrouter.serving.memo import CompileMemo, MemoEntry
from clickrouter.serving.trust import HOW_TO_TRUST, ModelTrust, OwnershipJudge, trust_root

CATALOG = "campaigns.json"
MANIFEST = "manifest.json"


@dataclass
class LoadedDirectory:
    """What :func:`read_directory` found; ``models[i]`` belongs to ``campaigns[i]``.

    With a memo, ``models[i]`` is None where ``memo_entries[i]`` stands for it;
    ``digests[i]`` is the file's sha256 when it was computed (memo or manifest).
    """

    path: Path
    version: str
    manifest: dict[str, Any]
    campaigns: list[Campaign] = field(default_factory=list)
    models: list[Any] = field(default_factory=list)
    model_paths: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    memo_entries: list[MemoEntry | None] = field(default_factory=list)
    digests: list[str | None] = field(default_factory=list)


def read_directory(
    path: str | Path, memo: CompileMemo | None = None, trust: ModelTrust | None = None
) -> LoadedDirectory:
    """Load every campaign model of ``path``; problems are collected, not raised.

    trust: what vouches for pickles besides ownership (default: ownership only).

    Raises :class:`ModelLoadError` only when the directory itself is unusable
    (missing, no readable catalogue, unreadable manifest, a signature that does
    not verify, a catalogue that differs from the manifest's digest).
    """
    root = Path(path)
    if not root.is_dir():
        raise ModelLoadError(f"{root}: not a model directory")
    sources = Sources(root, trust or ModelTrust())
    manifest = sources.manifest
    version = str(manifest.get("version") or root.resolve().name)
    loaded = LoadedDirectory(path=root, version=version, manifest=manifest)
    campaigns, loaded.problems = load_catalog(root / CATALOG, sources.catalog_bytes())
    files = _model_files(root, loaded.problems)
    _report_orphans(root, campaigns, files, loaded.problems)
    for campaign in campaigns:
        _load_one(loaded, campaign, files.get(campaign.id), sources, memo)
    return loaded


class Sources:
    """The manifest of a directory, its signature, and who vouches for each pickle."""

    def __init__(self, root: Path, trust: ModelTrust) -> None:
        self.root = root
        self.trust = trust
        manifest_bytes = _optional_bytes(root / MANIFEST)
        self.manifest = _decode_manifest(root / MANIFEST, manifest_bytes)
        files = self.manifest.get("files")
        self.digests: dict[str, Any] = files if isinstance(files, dict) else {}
        signature = _optional_bytes(root / SIGNATURE)
        self.has_signature = signature is not None
        self.signed = self._verify_signature(manifest_bytes, signature)
        self._judge = OwnershipJudge(trust_root(root))

    def _verify_signature(self, manifest_bytes: bytes | None, signature: bytes | None) -> bool:
        """True when a signature this process can check vouches for the manifest."""
        if signature is None or self.trust.signing_key is None:
            return False
        if manifest_bytes is None:
            raise ModelLoadError(f"{self.root / SIGNATURE}: a signature but no {MANIFEST}")
        problem = signature_problem(manifest_bytes, signature, self.trust.signing_key)
        if problem is not None:
            raise ModelLoadError(f"{self.root / MANIFEST}: {problem}; version refused")
        return True

    def catalog_bytes(self) -> bytes | None:
        """The catalogue's bytes, checked against the manifest's digest when it lists one."""
        path = self.root / CATALOG
        data = _optional_bytes(path)
        expected = self.digests.get(CATALOG)
        if data is not None and expected is not None and _sha256(data) != expected:
            raise ModelLoadError(f"{path}: sha256 differs from {MANIFEST}; version refused")
        return data

    def needs_digest(self, path: Path) -> bool:
        return path.name in self.digests or (self.signed and path.suffix in PICKLE_SUFFIXES)

    def untrusted(self, path: Path, info: os.stat_result, digest: str | None) -> str | None:
        """Why nothing vouches for the pickle ``path`` (None: something does)."""
        if self.trust.trust_all:
            return None
        if self.signed and digest is not None and self.digests.get(path.name) == digest:
            return None
        reason = self._judge.problem(path, info)
        if reason is None:
            return None
        if self.signed:
            reason += f", and the signed {MANIFEST} does not list it"
        elif self.has_signature:
            reason += f" ({MANIFEST} is signed, but no signing key is configured)"
        return reason


def untrusted_pickles(root: Path, paths: list[Path], trust: ModelTrust | None) -> list[str]:
    """Problems of the pickles among ``paths`` that nothing vouches for now."""
    sources = Sources(root, trust or ModelTrust())
    problems = []
    for path in paths:
        if path.suffix not in PICKLE_SUFFIXES:
            continue
        try:
            info = path.stat()
            digest = _sha256_file(path) if sources.needs_digest(path) else None
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror}")
            continue
        reason = sources.untrusted(path, info, digest)
        if reason is not None:
            problems.append(_refusal(path, reason))
    return problems


def _refusal(path: Path, reason: str) -> str:
    return f"{path}: refusing to unpickle a file from an untrusted source: {reason}; {HOW_TO_TRUST}"


def _optional_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read: {exc.strerror}") from None


def _decode_manifest(path: Path, data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {}
    try:
        manifest = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ModelLoadError(f"{path}: unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict):
        raise ModelLoadError(f"{path}: manifest must be a JSON object")
    return manifest


def _sha256_file(path: Path) -> str:
    return _sha256(path.read_bytes())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_files(root: Path, problems: list[str]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    # by name: the order of sorting the paths, without 5,000 slow Path comparisons
    for path in sorted(root.iterdir(), key=_name):
        if path.suffix not in MODEL_SUFFIXES or not path.is_file():
            continue
        if path.stem in files:
            problems.append(f"{path}: campaign {path.stem!r} has two model files")
            continue
        files[path.stem] = path
    return files


def _name(path: Path) -> str:
    return path.name


def _report_orphans(
    root: Path, campaigns: list[Campaign], files: dict[str, Path], problems: list[str]
) -> None:
    known = {c.id for c in campaigns}
    for stem, path in files.items():
        if stem not in known:
            problems.append(f"{path}: model file has no campaign in {root / 'campaigns.json'}")


def _load_one(
    loaded: LoadedDirectory,
    campaign: Campaign,
    path: Path | None,
    sources: Sources,
    memo: CompileMemo | None,
) -> None:
    if path is None:
        loaded.problems.append(
            f"{loaded.path / CATALOG}: campaign {campaign.id!r} has no model file "
            f"({campaign.id}.joblib or {campaign.id}.skops)"
        )
        return
    try:
        info, data = _read_judged(path)
    except OSError as exc:
        loaded.problems.append(f"{path}: cannot read: {exc.strerror}")
        return
    expected = sources.digests.get(path.name)
    wanted = memo is not None or sources.needs_digest(path)
    digest = _sha256(data) if wanted else None
    if expected is not None and digest != expected:
        loaded.problems.append(f"{path}: sha256 differs from {MANIFEST} (corrupt file?)")
        return
    if path.suffix in PICKLE_SUFFIXES:
        reason = sources.untrusted(path, info, digest)
        if reason is not None:
            loaded.problems.append(_refusal(path, reason))
            return
    entry = memo.get(digest, path.suffix) if memo is not None and digest is not None else None
    model = None
    if entry is None:
        try:
            model = load_model(path, data)
        except ModelFileError as exc:
            loaded.problems.append(str(exc))
            return
    loaded.campaigns.append(campaign)
    loaded.models.append(model)
    loaded.model_paths.append(path)
    loaded.memo_entries.append(entry)
    loaded.digests.append(digest)


def _read_judged(path: Path) -> tuple[os.stat_result, bytes]:
    """The stat and bytes of one open file: what is judged is what is loaded."""
    with open(path, "rb") as fh:
        return os.fstat(fh.fileno()), fh.read()
