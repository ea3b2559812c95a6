"""Publish one cycle as a new immutable store version, then switch CURRENT.

The version's layout and manifest are the model store's
(:class:`~clickrouter.modelstore.version.VersionWriter`,
:class:`~clickrouter.modelstore.manifest.Manifest`); this module says what a
training cycle puts in them. Besides ``version`` and ``created_at``:

* ``parent``: the version that was live when the cycle started;
* ``training_window``: ``{"start", "end"}`` epoch seconds (null = unbounded)
  and the first/last record time actually seen;
* ``feature_space``: the cycle's FeatureSpace (OOV slots left out, so
  ``FeatureSpace.from_dict`` reads it back);
* ``settings``: the TrainingSettings used;
* ``campaigns``: per campaign a :class:`~clickrouter.modelstore.manifest.CampaignRecord`:
  ``kind`` (logistic | base_rate), ``decision`` (promoted | kept | unchanged
  | failed | cold_start), ``reason``, ``trained_in`` (version whose cycle
  produced the file), ``data_version``, ``rows``/``positives`` (the sales
  the file was fitted on), ``kept_rows``, ``C``, ``rate``, ``metrics`` and
  ``served_metrics`` (held-out slice: log_loss, roc_auc, pr_auc,
  calibration) and, when the cycle's fit was kept out or failed, that fit's
  own record as ``candidate``.

A campaign whose file is carried over is hard-linked from the live version
with the digest that version's manifest lists: a cycle writes and hashes only
the models it changed. When the store holds a signing key,
``manifest.json.sig`` signs the manifest
(:mod:`clickrouter.modelstore.signing`): predictors holding the key trust the
files it lists wherever they are served from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickrouter.catalogue import Campaign
from clickrouter.errors import ModelLoadError
from clickrouter.features import FeatureSpace
from clickrouter.modelstore import (
    ModelStore,
    VersionWriter,
    manifest_of,
    read_digests,
    read_model,
    record_of,
)
from clickrouter.posteriors import LaplacePosterior

__all__ = ["Placement", "publish", "read_model", "space_spec"]


@dataclass
class Placement:
    """One campaign's file in the new version: a new model or a carried-over file.

    A carried-over file's ``digest`` is its sha256 as its version's manifest
    lists it (None: hashed when linked). The model's posterior, when it has
    one, goes beside it the same way: a new ``posterior``, or a carried-over
    ``posterior_source`` with its ``posterior_digest``.
    """

    campaign_id: str
    record: dict[str, Any]
    model: Any | None = None
    source: Path | None = None
    digest: str | None = None
    posterior: LaplacePosterior | None = None
    posterior_source: Path | None = None
    posterior_digest: str | None = None


def publish(
    store: ModelStore,
    catalog: list[Campaign],
    placements: list[Placement],
    content: dict[str, Any],
) -> str:
    """Stage and rename the version into the store; return its name (not yet live)."""
    with store.staging() as (version, stage):
        writer = VersionWriter(stage)
        published = _PublishedDigests()
        records = {}
        for placement in placements:
            if placement.model is None and placement.source is not None:
                placement.digest = placement.digest or published.of(placement.source)
            placement.record["file"] = _place(writer, placement)
            _place_posterior(writer, placement, published)
            placement.record.setdefault("trained_in", version)
            records[placement.campaign_id] = record_of(placement.record)
        writer.write_catalog(catalog)
        manifest = manifest_of(content)
        manifest.version = version
        manifest.created_at = datetime.now(tz=UTC).isoformat(timespec="seconds")
        manifest.campaigns = records
        writer.finish(manifest, store.signing_key)
    return version


class _PublishedDigests:
    """The sha256 of published files, as their versions' manifests list them."""

    def __init__(self) -> None:
        self._by_directory: dict[Path, dict[str, str]] = {}

    def of(self, path: Path) -> str | None:
        directory = path.parent
        if directory not in self._by_directory:
            try:
                self._by_directory[directory] = read_digests(directory)
            except ModelLoadError:  # not readable: the file is hashed as it is linked
                self._by_directory[directory] = {}
        return self._by_directory[directory].get(path.name)


def _place(writer: VersionWriter, placement: Placement) -> str:
    if placement.model is not None:
        return writer.write_model(placement.campaign_id, placement.model)
    if placement.source is None:
        raise ValueError(f"campaign {placement.campaign_id!r}: nothing to publish")
    return writer.link_model(placement.campaign_id, placement.source, placement.digest)


def _place_posterior(
    writer: VersionWriter, placement: Placement, published: _PublishedDigests
) -> None:
    cid = placement.campaign_id
    if placement.posterior is not None:
        writer.write_posterior(cid, placement.posterior)
    elif placement.posterior_source is not None:
        source = placement.posterior_source
        digest = placement.posterior_digest or published.of(source)
        writer.link_posterior(cid, source, digest)


def space_spec(space: FeatureSpace) -> dict[str, Any]:
    """FeatureSpace document without OOV slots (``FeatureSpace.from_dict`` round-trips it)."""
    return {
        "format": 1,
        "fields": list(space.fields),
        "vocabularies": {f: list(v[1:]) for f, v in space.vocabularies.items()},
    }
