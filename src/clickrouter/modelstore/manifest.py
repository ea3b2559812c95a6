"""``manifest.json`` of a model version, as typed structs: the one definition of its format.

A version directory holds ``campaigns.json``, one model file per campaign and
``manifest.json``, written last: what was trained (feature space, settings,
training window), the evidence behind each campaign's model (its
:class:`CampaignRecord`: kind, the verdict of the cycle, the sales it was
fitted on, held-out metrics) and the sha256 of every other file (``files``),
which is what a signature vouches for (:mod:`clickrouter.modelstore.signing`).

The format is versioned by ``format_version`` (:data:`FORMAT_VERSION`).
Manifests without it are format 1, as the trainer wrote them before the
format had an owner: the same keys, a ``"format": 1`` marker and records
whose fields were free-form. :func:`decode_manifest` reads both and returns
the current structs; a ``format_version`` above the current one is refused
(:class:`~clickrouter.errors.ModelLoadError`) rather than half-understood.
A field added with a default that older readers may ignore (as
``CampaignRecord.page_positives``, absent from versions written before
landing pages) keeps the format: every version stays readable both ways.

Everything in a manifest is checked on reading, as it may come from anyone
who could write the directory: types, ranges of counts, file names (a plain
name in the version directory: no separator, no ``..``, no hidden file) and
digests (64 hex digits).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

from clickrouter.errors import ModelLoadError

MANIFEST = "manifest.json"
CATALOG = "campaigns.json"
FORMAT_VERSION = 2
LEGACY_FORMAT = 1  # manifests without format_version
MAX_MANIFEST_BYTES = 64 << 20  # a 5,000-campaign manifest is ~5 MB

_T = TypeVar("_T")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_COUNT = 10**15  # rows and sales: far above any real dataset, far below a float's precision

Count = Annotated[int, msgspec.Meta(ge=0, le=_MAX_COUNT)]
Number = Annotated[float, msgspec.Meta(ge=-1e300, le=1e300)]
Text = Annotated[str, msgspec.Meta(max_length=100_000)]
Name = Annotated[str, msgspec.Meta(max_length=255)]


class HeldOut(msgspec.Struct, kw_only=True):
    """A model's metrics on a cycle's held-out slice (None: not computable there)."""

    rows: Count | None = None
    positives: Count | None = None
    log_loss: Number | None = None
    roc_auc: Number | None = None
    pr_auc: Number | None = None
    calibration: Number | None = None
    predicted_sales: Number | None = None


class CampaignRecord(msgspec.Struct, kw_only=True):
    """One campaign of a version: its file, what the model is and the evidence behind it.

    ``positives`` (plus a base-rate model's ``late_positives``) are the sales
    the file was fitted on: the policy's confidence in the model rests on them
    (:attr:`sales`). ``page_positives`` splits those sales by landing page id,
    for every page of the campaign in the catalogue the cycle trained with (a
    page added since has none; records of pages no longer listed count in
    :attr:`sales` only); it is empty for a version written before pages. A kept
    or failed fit of the cycle is kept as ``candidate``.
    """

    file: Name | None = None  # the model file in the version directory
    kind: Name | None = None  # "logistic" | "base_rate" ("failed" for a candidate)
    decision: Name | None = None  # promoted | kept | unchanged | failed | cold_start
    reason: Text | None = None
    trained_in: Name | None = None  # the version whose cycle produced the file
    data_version: Name | None = None
    rows: Count | None = None
    positives: Count | None = None
    late_positives: Count | None = None
    kept_rows: Count | None = None
    exposure: Number | None = None
    rate: Number | None = None
    pooled_rate: Number | None = None
    C: Number | None = None
    c_chosen_at_positives: Count | None = None
    recent_shift: Number | None = None
    grid_log_loss: dict[Name, Number] | None = None
    global_c: Number | None = None  # hierarchical: the shared effects' C
    page_positives: dict[Name, Count] = msgspec.field(default_factory=dict)
    fit_seconds: Number | None = None
    metrics: HeldOut | None = None
    served_metrics: HeldOut | None = None
    candidate: CampaignRecord | None = None

    @property
    def sales(self) -> int:
        """The sales the model's estimate rests on (a base rate's count its late sales)."""
        return (self.positives or 0) + (self.late_positives or 0)

    @property
    def is_logistic(self) -> bool:
        return self.kind == "logistic"


class FeatureSpaceSpec(msgspec.Struct, kw_only=True):
    """The cycle's FeatureSpace without OOV slots (``FeatureSpace.from_dict`` reads it)."""

    format: int = 1
    fields: list[Name] = msgspec.field(default_factory=list)
    vocabularies: dict[Name, list[str | int]] = msgspec.field(default_factory=dict)


class TrainingWindow(msgspec.Struct, kw_only=True):
    """Epoch seconds: the window asked for (None: unbounded) and the records seen."""

    start: Number | None = None
    end: Number | None = None
    first: Number | None = None
    last: Number | None = None


class Manifest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The content of ``manifest.json`` (see the module docstring)."""

    format_version: int = FORMAT_VERSION
    version: Name | None = None
    created_at: Name | None = None
    parent: Name | None = None
    training_window: TrainingWindow | None = None
    feature_space: FeatureSpaceSpec | None = None
    settings: dict[Name, Any] = msgspec.field(default_factory=dict)
    pooled_rate: Number | None = None
    delayed_feedback: dict[Name, Any] | None = None
    metrics: dict[Name, Any] | None = None  # version-wide metrics, shown by the predictor
    campaigns: dict[Name, CampaignRecord] = msgspec.field(default_factory=dict)
    files: dict[Name, Name] = msgspec.field(default_factory=dict)  # file name -> sha256

    def space_document(self) -> dict[str, Any] | None:
        """The feature space as ``FeatureSpace.from_dict`` takes it (None: not recorded)."""
        return None if self.feature_space is None else msgspec.to_builtins(self.feature_space)

    def as_json(self) -> dict[str, Any]:
        """The manifest as plain JSON values (for reports and ``clickrouter models``).

        Keys left at their default are left out, but ``format_version``, always first.
        """
        data: dict[str, Any] = msgspec.to_builtins(self)
        return {"format_version": self.format_version, **data}


class _Probe(msgspec.Struct):
    """Just enough of a manifest to know which format reads the rest."""

    format_version: int | None = None


class _Digests(msgspec.Struct):
    """The digests of a manifest, without the rest (the same key in every format)."""

    files: dict[Name, Name] = msgspec.field(default_factory=dict)


def encode_manifest(manifest: Manifest) -> bytes:
    """The bytes of ``manifest.json`` (indented: operators read it)."""
    return msgspec.json.format(msgspec.json.encode(manifest.as_json()), indent=1) + b"\n"


def decode_manifest(data: bytes, path: Path | str = MANIFEST) -> Manifest:
    """The manifest in ``data`` (either format), checked; raise :class:`ModelLoadError`."""
    found = _format_of(data, path)
    try:
        manifest = msgspec.json.decode(data, type=Manifest, strict=found is not None)
    except msgspec.ValidationError as exc:
        raise ModelLoadError(f"{path}: invalid manifest: {exc}") from None
    if found is None:
        manifest.format_version = FORMAT_VERSION  # format 1 reads as format 2: same keys
    _check_files(path, manifest.files)
    _check_records(path, manifest)
    return manifest


def decode_digests(data: bytes, path: Path | str = MANIFEST) -> dict[str, str]:
    """Only the ``files`` digests of the manifest in ``data``, checked (a faster read)."""
    _format_of(data, path)
    try:
        files = msgspec.json.decode(data, type=_Digests).files
    except msgspec.ValidationError as exc:
        raise ModelLoadError(f"{path}: invalid manifest: {exc}") from None
    _check_files(path, files)
    return files


def _format_of(data: bytes, path: Path | str) -> int | None:
    """The ``format_version`` of a manifest (None: format 1); refuse one this code cannot read."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ModelLoadError(
            f"{path}: manifest of {len(data)} bytes (at most {MAX_MANIFEST_BYTES})"
        )
    try:
        found = msgspec.json.decode(data, type=_Probe).format_version
    except msgspec.ValidationError as exc:
        raise ModelLoadError(f"{path}: invalid manifest: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ModelLoadError(f"{path}: unreadable manifest: {exc}") from None
    if found is not None and found > FORMAT_VERSION:
        raise ModelLoadError(
            f"{path}: manifest format_version {found} is newer than this clickrouter reads "
            f"(up to {FORMAT_VERSION}); upgrade clickrouter to load this version"
        )
    if found is not None and found <= LEGACY_FORMAT:
        raise ModelLoadError(f"{path}: manifest format_version {found} does not exist")
    return found


def _check_files(path: Path | str, files: dict[str, str]) -> None:
    """Every file a manifest lists is a plain file name, every digest a sha256."""
    for name, digest in files.items():
        if not is_plain_name(name) or name == MANIFEST:
            raise ModelLoadError(f"{path}: file name {name!r} is not a file of the version")
        if not _SHA256.fullmatch(digest):
            raise ModelLoadError(f"{path}: sha256 of {name!r} is not 64 hex digits")


def _check_records(path: Path | str, manifest: Manifest) -> None:
    """Every file a campaign record names is a plain file name."""
    for campaign_id, record in manifest.campaigns.items():
        if record.file is not None and not is_plain_name(record.file):
            raise ModelLoadError(
                f"{path}: campaign {campaign_id!r}: file {record.file!r} "
                "is not a file of the version"
            )


def is_plain_name(name: str) -> bool:
    """A name of a file directly in a version directory (no path, not hidden)."""
    return bool(_FILE_NAME.fullmatch(name)) and name not in (".", "..")


def record_of(record: dict[str, Any] | CampaignRecord) -> CampaignRecord:
    """A campaign record from the trainer's dict (numpy numbers read as numbers)."""
    if isinstance(record, CampaignRecord):
        return record
    return _converted(record, CampaignRecord)


def manifest_of(content: dict[str, Any]) -> Manifest:
    """A manifest from the keys of a dict (numpy numbers read as numbers; unknown keys dropped)."""
    return _converted(content, Manifest)


def _converted(value: Any, kind: type[_T]) -> _T:
    try:
        plain = msgspec.to_builtins(value, enc_hook=_plain, str_keys=True)
        return msgspec.convert(plain, kind, strict=False)
    except (msgspec.ValidationError, TypeError) as exc:
        raise ValueError(f"{kind.__name__}: {exc}") from None


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)  # a numpy scalar
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not a JSON value")
