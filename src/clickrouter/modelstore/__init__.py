"""Versioned model sets on disk: the version format, publish, CURRENT pointer, rollback."""

from clickrouter.modelstore.digests import KNOWN, file_sha256, identity, sha256_hex
from clickrouter.modelstore.manifest import (
    CATALOG,
    MANIFEST,
    CampaignRecord,
    Manifest,
    manifest_of,
    record_of,
)
from clickrouter.modelstore.signing import (
    SIGNATURE,
    read_key_file,
    sign_manifest,
    signature_problem,
)
from clickrouter.modelstore.store import ModelStore, StoreBusy, resolve_model_dir
from clickrouter.modelstore.version import (
    VersionManifest,
    VersionWriter,
    read_digests,
    read_model,
    read_version,
    verify,
    write_manifest,
)

__all__ = [
    "CATALOG",
    "KNOWN",
    "MANIFEST",
    "SIGNATURE",
    "CampaignRecord",
    "Manifest",
    "ModelStore",
    "StoreBusy",
    "VersionManifest",
    "VersionWriter",
    "file_sha256",
    "identity",
    "manifest_of",
    "read_digests",
    "read_key_file",
    "read_model",
    "read_version",
    "record_of",
    "resolve_model_dir",
    "sha256_hex",
    "sign_manifest",
    "signature_problem",
    "verify",
    "write_manifest",
]
