"""Per-request logit variances of a bank's offers, from the version's posterior files.

A trainer-fitted logistic model is additive in one-hot slots, and its
diagonal Laplace posterior (:mod:`clickrouter.posteriors`) gives each slot's
coefficient and the intercept independent Gaussian variances. So the variance
of an offer's logit for a request is the intercept's variance plus the
variances of the slots the request activates, plus its page's for a model
reading the ``landing_page`` column: a sum over the same handful of slots the
kernel multiplies. :class:`LogitVariances` lays those variances out like the
bank's table, one row per :class:`~clickrouter.features.FeatureSpace` slot and
one column per offer, the intercept folded into every row of one field (a
request activates exactly one slot per field) and the page's variance kept
apart, because a campaign's pages share every other term.

The posterior of a campaign's model is ``<campaign id>.posterior.json`` in
the version directory (:func:`clickrouter.posteriors.posterior_path` of its
model file). What is trusted: the file is JSON, fully validated; when the
manifest lists its sha256, the bytes must match; every (column, category)
must be a slot of the bank's space (the space holds every category of every
model's encoders, so a file naming another one is not this version's). A
category the space holds but the file does not name is a slot the model has
no coefficient for: variance 0. A campaign without a valid file (base-rate and
generic models, or a file refused, which :attr:`LogitVariances.problems`
names) is flagged in :attr:`LogitVariances.known`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from clickrouter.catalogue import PAGE_INPUT, Campaign
from clickrouter.errors import ModelLoadError
from clickrouter.features import FeatureSpace
from clickrouter.modelstore import sha256_hex
from clickrouter.posteriors import SUFFIX, LaplacePosterior, posterior_from_bytes
from clickrouter.serving.bank import ModelBank


@dataclass(frozen=True)
class LogitVariances:
    """The variance tables of one bank.

    table: (n_slots, n_offers) float64: per slot, the variance of each offer's
        coefficient, with the intercept's variance added to every row of the
        space's first field.
    page: (n_offers,) the variance of the offer's page coefficient (0: none).
    known: (n_offers,) bool, the offer's campaign has a posterior.
    problems: why a campaign's file was refused, one line each.
    """

    table: np.ndarray
    page: np.ndarray
    known: np.ndarray
    problems: list[str] = field(default_factory=list)

    def shared(self, slots: np.ndarray) -> np.ndarray:
        """(n_offers,) variance of every logit term but the page's, for one request's slots."""
        out = np.empty(self.table.shape[1], dtype=np.float64)
        shared_variance(self.table, np.asarray(slots, dtype=np.intp), out)
        return out

    def logit_variance(self, slots: np.ndarray) -> np.ndarray:
        """(n_offers,) the variance of every offer's logit for one request (0: not known)."""
        return self.shared(slots) + self.page


@numba.njit(cache=True, nogil=True)
def shared_variance(table: np.ndarray, slots: np.ndarray, out: np.ndarray) -> None:
    """``out[c] = sum_j table[slots[j], c]``: rows added in slot order."""
    first = table[slots[0]]
    for c in range(out.shape[0]):
        out[c] = first[c]
    for j in range(1, slots.shape[0]):
        row = table[slots[j]]
        for c in range(out.shape[0]):
            out[c] += row[c]


def logit_variances(bank: ModelBank, directory: Path, digests: dict[str, str]) -> LogitVariances:
    """The variance tables of ``bank``, loaded from ``directory`` (its version).

    digests: the manifest's sha256 per file name (``{}``: none listed).
    """
    space = bank.space
    n_offers = len(bank.offers)
    table = np.zeros((space.n_slots, n_offers), dtype=np.float64)
    page = np.zeros(n_offers, dtype=np.float64)
    known = np.zeros(n_offers, dtype=bool)
    problems: list[str] = []
    intercept_rows = space.field_slots(space.fields[0])
    first = 0
    for campaign in bank.campaigns:
        columns = slice(first, first + len(campaign.pages))
        first = columns.stop
        try:
            posterior = _read(directory / (campaign.id + SUFFIX), digests)
        except ModelLoadError as exc:
            problems.append(str(exc))
            continue
        if posterior is None:
            continue
        try:
            slots, variances, pages = _layout(space, campaign, posterior)
        except ValueError as exc:
            problems.append(f"{directory / (campaign.id + SUFFIX)}: {exc}")
            continue
        table[slots, columns] = variances[:, None]
        table[intercept_rows.start : intercept_rows.stop, columns] += posterior.intercept
        page[columns] = pages
        known[columns] = True
    return LogitVariances(table, page, known, problems)


def _read(path: Path, digests: dict[str, str]) -> LaplacePosterior | None:
    """The posterior at ``path``, None when there is none; ModelLoadError when refused."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read: {exc.strerror}") from None
    expected = digests.get(path.name)
    if expected is not None and sha256_hex(raw) != expected:
        raise ModelLoadError(f"{path}: sha256 differs from the manifest (corrupt file?)")
    return posterior_from_bytes(raw, path)


def _layout(
    space: FeatureSpace, campaign: Campaign, posterior: LaplacePosterior
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(space slots, their variances, each page's variance) of one campaign's posterior."""
    slots: list[int] = []
    variances: list[float] = []
    pages = np.zeros(len(campaign.pages), dtype=np.float64)
    by_slot = posterior.slot_variances()
    for (column, category), variance in by_slot.items():
        if column == PAGE_INPUT:
            continue
        if column not in space.fields:
            raise ValueError(f"input column {column!r} is not a profile field")
        local = space.local_index(column, category)
        if local == 0:
            raise ValueError(f"{column}={category!r} is not in the bank's feature space")
        slots.append(space.field_slots(column).start + local)
        variances.append(variance)
    for i, landing_page in enumerate(campaign.pages):
        pages[i] = by_slot.get((PAGE_INPUT, landing_page.id), 0.0)
    return np.array(slots, dtype=np.intp), np.array(variances, dtype=np.float64), pages
