"""Reading and writing a model version directory: the one owner of its layout.

A version directory holds ``campaigns.json`` (the catalogue), one model file
per campaign (``<campaign_id>.joblib``: a pickle; ``.skops`` for models
published by hand), optionally a logistic model's posterior beside it
(``<campaign_id>.posterior.json``, :mod:`clickrouter.posteriors`; listed
with its sha256 like every other file) and ``manifest.json``
(:mod:`clickrouter.modelstore.manifest`), written last with the sha256 of
every other file, then, when the publisher holds a signing key,
``manifest.json.sig``.

:class:`VersionWriter` fills a staging directory (the store renames it into
place whole); :func:`read_version` reads a directory's manifest back, typed
and checked, with its bytes for the signature check; :func:`verify` checks
every file against it.
"""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from clickrouter.catalogue import Campaign, write_catalog
from clickrouter.errors import ModelLoadError
from clickrouter.modelstore.digests import file_sha256, sha256_hex
from clickrouter.modelstore.manifest import (
    CATALOG,
    MANIFEST,
    CampaignRecord,
    Manifest,
    decode_digests,
    decode_manifest,
    encode_manifest,
    is_plain_name,
    manifest_of,
)
from clickrouter.modelstore.signing import SIGNATURE, sign_manifest
from clickrouter.posteriors import SUFFIX as POSTERIOR_SUFFIX
from clickrouter.posteriors import LaplacePosterior, save_posterior

MODEL_SUFFIX = ".joblib"


@dataclass(frozen=True)
class VersionManifest:
    """The manifest of a directory: its bytes (what a signature covers) and content.

    Both are None for a directory without ``manifest.json`` (made by hand).
    """

    directory: Path
    raw: bytes | None
    manifest: Manifest | None

    @property
    def digests(self) -> dict[str, str]:
        return {} if self.manifest is None else self.manifest.files

    @property
    def records(self) -> dict[str, CampaignRecord]:
        return {} if self.manifest is None else self.manifest.campaigns


def read_version(directory: Path) -> VersionManifest:
    """The manifest of a version directory, checked; raise :class:`ModelLoadError`."""
    path = Path(directory) / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return VersionManifest(Path(directory), None, None)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read: {exc.strerror}") from None
    return VersionManifest(Path(directory), raw, decode_manifest(raw, path))


def read_digests(directory: Path) -> dict[str, str]:
    """The sha256 per file a version's manifest lists ({} without a manifest), checked."""
    path = Path(directory) / MANIFEST
    try:
        return decode_digests(path.read_bytes(), path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read: {exc.strerror}") from None


def verify(directory: Path) -> list[str]:
    """Problems found checking every file of a version against its manifest."""
    directory = Path(directory)
    try:
        found = read_version(directory)
    except ModelLoadError as exc:
        return [exc.message]
    if found.manifest is None:
        return [f"{directory / MANIFEST}: no manifest (no file digests)"]
    problems = []
    for name, expected in found.manifest.files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{path}: listed in the manifest but missing")
        elif file_sha256(path) != expected:
            problems.append(f"{path}: sha256 differs from the manifest")
    for campaign_id, record in found.manifest.campaigns.items():
        if record.file is not None and record.file not in found.manifest.files:
            problems.append(
                f"{directory / MANIFEST}: campaign {campaign_id!r}: file {record.file!r} "
                "has no sha256 in the manifest"
            )
    return problems


class VersionWriter:
    """Fills a (staging) directory with a version: models, catalogue, then the manifest.

    Every file is hashed as it is written (or its digest carried over with
    it), so the manifest never reads the directory back.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.files: dict[str, str] = {}  # name -> sha256, as the manifest lists them

    def write_model(self, campaign_id: str, model: Any) -> str:
        """Write a campaign's model file; return its name."""
        name = self._name(campaign_id, MODEL_SUFFIX)
        data = encode_model(model)
        _write_private(self.directory / name, data)
        self.files[name] = sha256_hex(data)
        return name

    def link_model(self, campaign_id: str, source: Path, digest: str | None = None) -> str:
        """Carry a published model file over (a hard link); return its name.

        digest: its sha256 as the manifest of its version lists it (hashed
            here when None). A file changed since no longer matches it, and
            every reader then refuses it: the new manifest never vouches for
            bytes its publisher did not write.
        """
        return self._link(self._name(campaign_id, source.suffix), source, digest)

    def _link(self, name: str, source: Path, digest: str | None) -> str:
        target = self.directory / name
        try:  # versions are immutable, so sharing the inode is safe and free
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
        self.files[name] = digest if digest is not None else file_sha256(target)
        return name

    def write_posterior(self, campaign_id: str, posterior: LaplacePosterior) -> str:
        """Write a campaign's posterior (``<campaign_id>.posterior.json``); return its name."""
        name = self._name(campaign_id, POSTERIOR_SUFFIX)
        save_posterior(posterior, self.directory / name)
        self.files[name] = file_sha256(self.directory / name)
        return name

    def link_posterior(self, campaign_id: str, source: Path, digest: str | None = None) -> str:
        """Carry a published posterior file over with its model (as :meth:`link_model`)."""
        return self._link(self._name(campaign_id, POSTERIOR_SUFFIX), source, digest)

    def write_catalog(self, catalog: list[Campaign]) -> None:
        path = self.directory / CATALOG
        write_catalog(path, catalog)
        self.files[CATALOG] = file_sha256(path)

    def finish(self, manifest: Manifest, signing_key: bytes | None = None) -> Manifest:
        """Write ``manifest.json`` (listing every file written) and sign it with the key."""
        manifest.files = dict(sorted(self.files.items()))
        (self.directory / MANIFEST).write_bytes(encode_manifest(manifest))
        if signing_key is not None:
            sign_manifest(self.directory, signing_key)
        return manifest

    def _name(self, campaign_id: str, suffix: str) -> str:
        name = f"{campaign_id}{suffix}"
        if not is_plain_name(name) or name in (CATALOG, MANIFEST, SIGNATURE):
            raise ValueError(f"campaign {campaign_id!r}: not usable as a model file name")
        return name


def write_manifest(directory: Path, content: dict[str, Any]) -> Manifest:
    """Write the manifest of a directory filled by hand: ``content`` + every file's sha256."""
    directory = Path(directory)
    writer = VersionWriter(directory)
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name not in (MANIFEST, SIGNATURE):
            writer.files[path.name] = file_sha256(path)
    return writer.finish(manifest_of(content))


def encode_model(model: Any) -> bytes:
    """A ``.joblib`` file's bytes: a plain protocol-5 pickle, which ``joblib.load`` reads.

    ``joblib.dump`` runs the pure-Python pickler (~4x slower on our
    pipelines); the C pickler writes the same objects, and thousands of
    files per cycle make the difference.
    """
    return pickle.dumps(model, protocol=5)


def read_model(path: str | Path) -> Any:
    """Load a model file of the trainer's own store (plain pickle or ``joblib.dump``)."""
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception:  # joblib's own format (numpy wrappers, compression)
        return joblib.load(path)


def _write_private(path: Path, data: bytes) -> None:
    # writable by the owner only, whatever the umask: predictors trust such files
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with open(fd, "wb") as fh:
        fh.write(data)
