"""What a cycle starts from (the live version) and what it puts in the new one.

For every catalogue campaign the new version holds either a new model (fit
this cycle) or the live version's file, carried over: unchanged data, a guard
that kept the served model, or a failed fit. With ``cold_at_prior``, a campaign
no record has reached yet gets the cycle's prior mean once it has moved
(:func:`drifted_cold`). The manifest record of each
campaign says which and why, and describes the file the version holds: a
carried-over file keeps its own record (its kind, C and the sales it was
fitted on), with this cycle's verdict, and a kept or failed fit goes under
``candidate``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clickrouter.training.fitting import FitResult
from clickrouter.training.models import (
    Transformers,
    base_rate_pipeline,
    logistic_pipeline,
    n_columns,
)
from clickrouter.training.posterior import posterior_from_precision
from clickrouter.training.publish import Placement


@dataclass
class Served:
    """The live version as the cycle found it."""

    version: str | None = None
    files: dict[str, Path] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)
    catalog: bytes = b""
    settings: dict[str, Any] = field(default_factory=dict)
    # file name -> sha256 as its manifest lists them: a carried-over file keeps its digest
    digests: dict[str, str] = field(default_factory=dict)
    posteriors: dict[str, Path] = field(default_factory=dict)  # campaign id -> its posterior

    def carry(self, cid: str, record: dict[str, Any]) -> Placement:
        """The live version's file of ``cid`` carried over (and its posterior), with ``record``."""
        source = self.files[cid]
        carried = Placement(cid, record, source=source, digest=self.digests.get(source.name))
        posterior = self.posteriors.get(cid)
        if posterior is not None:
            carried.posterior_source = posterior
            carried.posterior_digest = self.digests.get(posterior.name)
        return carried


def jsonable(value: dict[str, Any]) -> Any:
    """``value`` as it reads back from the manifest (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def changed(cid: str, versions: dict[str, str | None], served: Served) -> bool:
    if cid not in served.files:
        return True  # a new campaign needs a model, with or without data
    if versions.get(cid) is None:
        return False
    return bool(served.records.get(cid, {}).get("data_version") != versions[cid])


def placement(
    result: FitResult,
    transformers: Transformers,
    served: Served,
    data_version: str | None,
    pooled: float,
) -> Placement:
    """A new model, or the served file when the guard kept it or the fit failed.

    The new model reads the campaign's landing page when the fit gave its
    pages effects (``result.pages``); a pooled fallback reads no page.
    """
    entry = record(result, data_version)
    old = served.files.get(result.campaign_id)
    if result.decision in ("kept", "failed") and old is not None:
        kept = kept_record(entry, served.records.get(result.campaign_id, {}))
        return served.carry(result.campaign_id, kept)
    if result.kind == "failed":  # nothing to fall back on: the pooled base rate
        entry.update(kind="base_rate", rate=pooled)
        fallback = base_rate_pipeline(transformers(), pooled)
        return Placement(result.campaign_id, entry, model=fallback)
    transformer = transformers(result.pages)
    coef = result.coef if result.coef is not None else np.zeros(n_columns(transformer))
    model = logistic_pipeline(transformer, coef, result.intercept, C=result.C or 1.0)
    fitted = Placement(result.campaign_id, entry, model=model)
    if result.precision is not None:
        fitted.posterior = posterior_from_precision(transformer, *result.precision)
    return fitted


# what a cycle says of a campaign, as opposed to what describes a model file
VERDICT = ("decision", "reason", "data_version", "served_metrics")


def kept_record(candidate: dict[str, Any], served: dict[str, Any]) -> dict[str, Any]:
    """The record of a served file a cycle keeps over its own fit, ``candidate``.

    The served record's fields describe the file (the policy reads its kind and
    sales, the next cycle its C), the verdict is this cycle's, and the served
    model's metrics are those on this cycle's held-out slice when it was scored.
    """
    entry = {k: v for k, v in served.items() if k != "candidate"}
    entry.setdefault("trained_in", None)
    entry.update({k: candidate[k] for k in VERDICT})
    if candidate["served_metrics"] is not None:
        entry["metrics"] = candidate["served_metrics"]
    entry["candidate"] = {k: v for k, v in candidate.items() if k not in VERDICT}
    return entry


def carried(cid: str, served: Served) -> Placement:
    entry = dict(served.records.get(cid, {}))
    entry.update(decision="unchanged", reason="no new data since the served version")
    entry.setdefault("trained_in", served.version)
    return served.carry(cid, entry)


def record(result: FitResult, data_version: str | None) -> dict[str, Any]:
    return {
        "kind": result.kind,
        "decision": result.decision,
        "reason": result.reason,
        "data_version": data_version,
        "C": result.C,
        "metrics": result.metrics,
        "served_metrics": result.served_metrics,
        "fit_seconds": round(result.seconds, 4),
        **result.details,
    }


def cold_record(rate: float, reason: str = "no data yet") -> dict[str, Any]:
    return {
        "kind": "base_rate",
        "decision": "cold_start",
        "reason": reason,
        "rate": rate,
        "data_version": None,
    }


# A cold campaign's model is written again once the prior mean has moved by more
# than this (in log units) from the rate it scores. Its Thompson draw has a log-sd
# of 0.38 or more (the rate posterior without a sale at the demo's scale, before the
# profile spread), so a smaller move barely changes its chances, and writing
# thousands of identical files every cycle would cost more than the rest of it.
COLD_DRIFT = 0.2


def drifted_cold(
    ids: list[str], versions: dict[str, str | None], served: Served, prior: float
) -> list[str]:
    """The campaigns of ``ids`` no record has reached yet whose model scores a rate
    more than :data:`COLD_DRIFT` away from the prior mean ``prior``.

    Such a campaign's model is a prior mean: the cold start's ``cold_start_rate``
    or an earlier cycle's. A base-rate fit of a campaign with one click and no
    sale would score about ``prior`` (the posterior mean of no evidence), so
    leaving the never-clicked ones at another rate would rank two campaigns
    apart by one click.
    """
    found = []
    for cid in ids:
        record = served.records.get(cid)
        if versions.get(cid) is not None or cid not in served.files:
            continue
        if not isinstance(record, dict) or record.get("kind") != "base_rate":
            continue
        if record.get("data_version") is not None:
            continue  # fitted on records once (now out of the window): not a prior mean
        rate = record.get("rate")
        usable = isinstance(rate, int | float) and 0 < rate < 1
        if not usable or abs(math.log(prior / float(rate or 1.0))) > COLD_DRIFT:
            found.append(cid)
    return found
