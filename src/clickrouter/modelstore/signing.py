"""Signed manifests: an HMAC-SHA256 over ``manifest.json``'s bytes, in ``manifest.json.sig``.

The manifest lists the sha256 of every file of a version, so a valid signature
vouches for every file whose bytes still hash to what it lists. The trainer
signs what it publishes when it holds the key; a predictor holding the same
key trusts those files wherever they sit (see :mod:`clickrouter.serving.trust`).

The key is a shared secret read from a file only its owner may read (e.g.
``head -c 32 /dev/urandom > model.key; chmod 600 model.key``): whoever holds it
can sign, so it stays with the trainer and the predictors.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

import msgspec

from clickrouter.errors import InvalidInput

SIGNATURE = "manifest.json.sig"
ALGORITHM = "hmac-sha256"
MIN_KEY_BYTES = 32
_DOMAIN = b"clickrouter-manifest-v1\0"  # a MAC made for anything else never verifies here


class Signature(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Content of ``manifest.json.sig``."""

    algorithm: str
    key_id: str  # which key signed (not secret): names a mismatch without guessing
    mac: str  # hex HMAC-SHA256 of the domain tag + the manifest's bytes


def read_key_file(path: str | Path, *, option: str = "model_signing_key_file") -> bytes:
    """The signing key in ``path``; refuse a file others could read or replace.

    ``option`` names the setting or flag in error messages.
    """
    path = Path(path)
    try:
        info = path.stat()
        data = path.read_bytes().strip()
    except OSError as exc:
        raise InvalidInput(f"{option} {path}: cannot read the key: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"{option} {path}: not a regular file")
    if info.st_mode & 0o027:
        raise InvalidInput(
            f"{option} {path}: mode {stat.S_IMODE(info.st_mode):o} lets others read or change "
            f"the key; run: chmod 600 {path}"
        )
    if info.st_uid not in (os.geteuid(), 0):
        raise InvalidInput(f"{option} {path}: owned by uid {info.st_uid}, not by this user or root")
    if len(data) < MIN_KEY_BYTES:
        raise InvalidInput(
            f"{option} {path}: key too short ({len(data)} bytes, need {MIN_KEY_BYTES}); "
            "make one with: head -c 32 /dev/urandom | base64 > KEYFILE"
        )
    return data


def key_id(key: bytes) -> str:
    """A public name for a key (an HMAC of a constant: says nothing about the key)."""
    return hmac.new(key, b"clickrouter-key-id", hashlib.sha256).hexdigest()[:16]


def mac_of(key: bytes, manifest_bytes: bytes) -> str:
    return hmac.new(key, _DOMAIN + manifest_bytes, hashlib.sha256).hexdigest()


def sign_manifest(directory: Path, key: bytes) -> Path:
    """Write ``manifest.json.sig`` for the directory's ``manifest.json``; return its path."""
    manifest_bytes = (directory / "manifest.json").read_bytes()
    signature = Signature(algorithm=ALGORITHM, key_id=key_id(key), mac=mac_of(key, manifest_bytes))
    target = directory / SIGNATURE
    target.write_bytes(msgspec.json.encode(signature) + b"\n")
    return target


def signature_problem(manifest_bytes: bytes, signature_bytes: bytes, key: bytes) -> str | None:
    """Why the signature does not vouch for the manifest (None: it does)."""
    try:
        signature = msgspec.json.decode(signature_bytes, type=Signature)
    except msgspec.DecodeError as exc:
        return f"unreadable signature: {exc}"
    if signature.algorithm != ALGORITHM:
        return f"unknown signature algorithm {signature.algorithm!r} (expected {ALGORITHM})"
    if not hmac.compare_digest(signature.mac, mac_of(key, manifest_bytes)):
        if signature.key_id != key_id(key):
            return (
                f"signed with another key (key id {signature.key_id}, this predictor holds "
                f"{key_id(key)})"
            )
        return "the signature does not match manifest.json (changed after signing)"
    return None
