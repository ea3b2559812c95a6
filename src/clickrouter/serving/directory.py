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
the same bytes, which passed every check then and would pass them again). A
file this process hashed before, unchanged since (same stat identity, see
:mod:`clickrouter.modelstore.digests`), is not even read then: versions share
most files as hard links, so a reload reads the files that changed.

The manifest is read and checked by the model store's reader
(:func:`~clickrouter.modelstore.version.read_version`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clickrouter.catalogue import Campaign, load_catalog
from clickrouter.errors import ModelLoadError
from clickrouter.modelstore import (
    CATALOG,
    KNOWN,
    MANIFEST,
    SIGNATURE,
    Manifest,
    file_sha256,
    identity,
    read_version,
    sha256_hex,
    signature_problem,
)
from clickrouter.serving.loading import (
    MODEL_SUFFIXES,
    PICKLE_SUFFIXES,
    ModelFileError,
    load_model,
)
from clickrouter.serving.memo import CompileMemo, MemoEntry
from clickrouter.serving.trust import HOW_TO_TRUST, ModelTrust, OwnershipJudge, trust_root

_PARSED_CATALOGS = 4  # catalogues kept parsed: a reload usually finds the same one


@dataclass
class LoadedDirectory:
    """What :func:`read_directory` found; ``models[i]`` belongs to ``campaigns[i]``.

    With a memo, ``models[i]`` is None where ``memo_entries[i]`` stands for it;
    ``digests[i]`` is the file's sha256 when it was computed (memo or manifest).
    """

    path: Path
    version: str
    manifest: Manifest | None  # None: the directory has no manifest.json
    campaigns: list[Campaign] = field(default_factory=list)
    models: list[Any] = field(default_factory=list)
    model_paths: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    memo_entries: list[MemoEntry | None] = field(default_factory=list)
    digests: list[str | None] = field(default_factory=list)
    # the model of each digest loaded so far: identical files (every campaign of a
    # cold start holds the same base-rate model) are unpickled once
    by_digest: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def feature_space(self) -> dict[str, Any] | None:
        """The FeatureSpace document the manifest records (None: none recorded)."""
        return None if self.manifest is None else self.manifest.space_document()


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
    version = (manifest.version if manifest is not None else None) or root.resolve().name
    loaded = LoadedDirectory(path=root, version=version, manifest=manifest)
    campaigns, loaded.problems = _catalog(root / CATALOG, sources.catalog_bytes())
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
        found = read_version(root)
        self.manifest = found.manifest
        self.digests = found.digests
        signature = _optional_bytes(root / SIGNATURE)
        self.has_signature = signature is not None
        self.signed = self._verify_signature(found.raw, signature)
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
        if data is not None and expected is not None and sha256_hex(data) != expected:
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
            digest = file_sha256(path) if sources.needs_digest(path) else None
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


_parsed: OrderedDict[str, list[Campaign]] = OrderedDict()  # sha256 -> a valid catalogue


def _catalog(path: Path, data: bytes | None) -> tuple[list[Campaign], list[str]]:
    """:func:`load_catalog`; a valid catalogue is parsed once per content (campaigns
    are immutable), one with problems every time (they name its path)."""
    if data is None:
        return load_catalog(path, data)  # raises: no catalogue
    key = sha256_hex(data)
    if key in _parsed:
        _parsed.move_to_end(key)
        return list(_parsed[key]), []
    campaigns, problems = load_catalog(path, data)
    if not problems:
        _parsed[key] = list(campaigns)
        while len(_parsed) > _PARSED_CATALOGS:
            _parsed.popitem(last=False)
    return campaigns, problems


def _model_files(root: Path, problems: list[str]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    with os.scandir(root) as found:
        # by name: the order of sorting the paths, without 5,000 slow Path comparisons
        entries = sorted(found, key=_name)
    for entry in entries:
        path = root / entry.name
        if path.suffix not in MODEL_SUFFIXES or not _is_file(entry):
            continue
        if path.stem in files:
            problems.append(f"{path}: campaign {path.stem!r} has two model files")
            continue
        files[path.stem] = path
    return files


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _is_file(entry: os.DirEntry[str]) -> bool:
    """A regular file or a link to one (the entry's type, a stat only for links)."""
    try:
        return entry.is_file()
    except OSError:
        return False


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
    if memo is not None and _from_memo(loaded, campaign, path, sources, memo):
        return
    try:
        info, data, unchanged = _read_judged(path)
    except OSError as exc:
        loaded.problems.append(f"{path}: cannot read: {exc.strerror}")
        return
    wanted = memo is not None or sources.needs_digest(path)
    digest = sha256_hex(data) if wanted else None
    if digest is not None and unchanged:
        KNOWN.remember(info, digest)
    if not _checked(loaded, path, info, digest, sources):
        return
    entry = memo.get(digest, path.suffix) if memo is not None and digest is not None else None
    model = None
    if entry is None and digest is not None and digest in loaded.by_digest:
        model = loaded.by_digest[digest]  # the same bytes: the same model
    elif entry is None:
        try:
            model = load_model(path, data)
        except ModelFileError as exc:
            loaded.problems.append(str(exc))
            return
        if digest is not None:
            loaded.by_digest[digest] = model
    _add(loaded, campaign, model, path, entry, digest)


def _from_memo(
    loaded: LoadedDirectory, campaign: Campaign, path: Path, sources: Sources, memo: CompileMemo
) -> bool:
    """Take a file this process hashed before, unchanged since, from its memo entry.

    Nothing is unpickled here, so the file is judged on a stat of its path;
    False when the file must be read (unknown, changed, or no memo entry).
    """
    try:
        info = os.stat(path)
    except OSError:
        return False  # the full read reports it
    digest = KNOWN.get(info)
    entry = memo.get(digest, path.suffix) if digest is not None else None
    if digest is None or entry is None:
        return False
    if _checked(loaded, path, info, digest, sources):
        _add(loaded, campaign, None, path, entry, digest)
    return True


def _checked(
    loaded: LoadedDirectory,
    path: Path,
    info: os.stat_result,
    digest: str | None,
    sources: Sources,
) -> bool:
    """The file's bytes match the manifest and something vouches for a pickle."""
    expected = sources.digests.get(path.name)
    if expected is not None and digest != expected:
        loaded.problems.append(f"{path}: sha256 differs from {MANIFEST} (corrupt file?)")
        return False
    if path.suffix in PICKLE_SUFFIXES:
        reason = sources.untrusted(path, info, digest)
        if reason is not None:
            loaded.problems.append(_refusal(path, reason))
            return False
    return True


def _add(
    loaded: LoadedDirectory,
    campaign: Campaign,
    model: Any,
    path: Path,
    entry: MemoEntry | None,
    digest: str | None,
) -> None:
    loaded.campaigns.append(campaign)
    loaded.models.append(model)
    loaded.model_paths.append(path)
    loaded.memo_entries.append(entry)
    loaded.digests.append(digest)


def _read_judged(path: Path) -> tuple[os.stat_result, bytes, bool]:
    """The stat and bytes of one open file (what is judged is what is loaded), and
    whether the file kept its stat identity while it was read."""
    with open(path, "rb") as fh:
        info = os.fstat(fh.fileno())
        data = fh.read()
        unchanged = identity(os.fstat(fh.fileno())) == identity(info)
    return info, data, unchanged
