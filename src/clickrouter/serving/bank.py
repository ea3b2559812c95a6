"""ModelBank: every offer of a model directory, scored in one pass.

An offer is a (campaign, landing page) pair (:class:`~clickrouter.catalogue.Offer`);
the bank's columns are the offers of its campaigns, campaign by campaign,
pages in catalogue order. Each campaign has one model, which may read the
page id. Linear campaign models are compiled (see
:mod:`clickrouter.serving.compiler`) into one table of shape (n_slots,
n_compiled offers); scoring a request multiplies a handful of its rows
(:mod:`clickrouter.serving.kernel`). Models that cannot be compiled are scored
by a :class:`~clickrouter.serving.pool.WorkerPool`. The bank knows nothing of
HTTP: the HTTP app, the CLI and the tests call the same object.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from clickrouter.catalogue import Campaign, Offer, offer_name
from clickrouter.errors import InvalidInput, ModelLoadError, NoEligibleCampaign
from clickrouter.features import FeatureSpace
from clickrouter.modelstore import ModelStore, resolve_model_dir
from clickrouter.profile import extract_profile
from clickrouter.serving import kernel
from clickrouter.serving.assemble import Assembly, assemble
from clickrouter.serving.cache import directory_key, load_cached, store_cached
from clickrouter.serving.directory import read_directory, untrusted_pickles
from clickrouter.serving.memo import CompileMemo
from clickrouter.serving.pool import WorkerPool
from clickrouter.serving.targeting import Eligibility
from clickrouter.serving.trust import ModelTrust


class RankedOffer(msgspec.Struct, frozen=True):
    """One offer of a ranking: P(sale) and expected value (P(sale) x payout)."""

    campaign_id: str
    landing_page_id: str
    probability: float
    expected_value: float


@dataclass(frozen=True)
class Decision:
    """The best eligible offer for one request, by expected value = P(sale) x payout.

    ``landing_page`` is the chosen page's URL template;
    :meth:`~clickrouter.catalogue.LandingPage.url_for` fills it.
    """

    campaign_id: str
    landing_page_id: str
    landing_page: str
    probability: float
    payout: float
    expected_value: float
    ranking: tuple[RankedOffer, ...]
    n_eligible: int
    model_version: str


class ModelBank:
    """All campaign models of one model-directory version, ready to score.

    Build with :meth:`open` (a model directory or a model store) or
    :meth:`from_directory`. Columns of every result are the offers of
    :attr:`offers`: :attr:`campaign_ids` and :attr:`page_ids` name them.
    :attr:`campaigns` lists each campaign once, in catalogue order;
    :attr:`offer_campaign_` maps a column to its index there.
    """

    def __init__(self, assembly: Assembly, pool: WorkerPool | None, version: str) -> None:
        self.assembly_ = assembly
        self.pool_ = pool
        self.version = version
        self.space: FeatureSpace = assembly.space
        self.campaigns: list[Campaign] = assembly.campaigns
        self.offers: list[Offer] = assembly.offers
        self.skipped: list[str] = assembly.skipped
        self.eligibility_ = Eligibility(self.space, self.offers)
        self.payouts_ = np.array([o.campaign.payout for o in self.offers], dtype=np.float64)
        self.offer_campaign_ = np.repeat(
            np.arange(len(self.campaigns), dtype=np.intp), [len(c.pages) for c in self.campaigns]
        )
        self._ids = [o.campaign.id for o in self.offers]
        self._page_ids = [o.page.id for o in self.offers]
        # the name of each column in scores, OIP v2 and ``clickrouter score``
        self.offer_names = [offer_name(o.campaign.id, o.page.id) for o in self.offers]
        self._index = {(o.campaign.id, o.page.id): j for j, o in enumerate(self.offers)}
        self._first: dict[str, int] = {}  # the first column of each campaign
        for j, cid in enumerate(self._ids):
            self._first.setdefault(cid, j)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        version: str | None = None,
        strict: bool = True,
        compile: bool = True,
        workers: int | None = None,
        cache_dir: str | Path | None = None,
        trust: ModelTrust | None = None,
    ) -> ModelBank:
        """The bank of what ``clickrouter serve --models`` accepts.

        ``path`` is a model directory, or a model store: its live version
        (``CURRENT``), or ``version`` when given (a name ``models list`` shows).
        A store without ``CURRENT`` raises :class:`~clickrouter.errors.NotFound`.
        The other arguments are :meth:`from_directory`'s.
        """
        directory, _ = resolve_model_dir(path, version)
        return cls.from_directory(
            directory,
            strict=strict,
            compile=compile,
            workers=workers,
            cache_dir=cache_dir,
            trust=trust,
        )

    @classmethod
    def from_directory(
        cls,
        path: str | Path,
        *,
        strict: bool = True,
        compile: bool = True,
        workers: int | None = None,
        cache_dir: str | Path | None = None,
        trust: ModelTrust | None = None,
    ) -> ModelBank:
        """Load and compile a model directory (a model store: its ``CURRENT`` version).

        strict: raise :class:`ModelLoadError` listing every problem found (the
            default); with ``strict=False`` load the rest and list what was
            skipped in :attr:`skipped`.
        compile: set False to score every model in the worker pool (benchmarks).
        workers: processes of the generic pool (default: CPU count).
        cache_dir: keep the compiled bank there, keyed by the directory's
            content, and memory-map it on the next load (shared by processes);
            also keep each compiled model there, keyed by its file's bytes, so
            a new version reuses every model file it shares with earlier ones.
            It must be private to this user (see :mod:`~clickrouter.serving.cachedir`).
        trust: what vouches for ``.joblib`` files besides ownership (the
            operator switch, a manifest signing key); see :mod:`~clickrouter.serving.trust`.
        """
        root = Path(path)
        if ModelStore.is_store(root):
            root, _ = resolve_model_dir(root)
        if not root.is_dir():
            raise ModelLoadError(f"{root}: not a model directory")
        key = directory_key(root) if cache_dir is not None and compile else None
        cached = load_cached(Path(cache_dir), key, root) if cache_dir is not None and key else None
        if cached is not None and untrusted_pickles(root, cached[0].generic_paths, trust):
            cached = None  # the full load below names each refused file
        if cached is not None:
            assembly, version = cached
        else:
            memo = CompileMemo(Path(cache_dir)) if cache_dir is not None and compile else None
            started = time.time()
            assembly, version = _assemble_directory(root, compile=compile, memo=memo, trust=trust)
            if cache_dir is not None and key:
                store_cached(Path(cache_dir), key, assembly, version, memo_since=started)
        if assembly.skipped and strict:
            raise ModelLoadError(
                f"{root}: {len(assembly.skipped)} problem(s): " + "; ".join(assembly.skipped[:20]),
                assembly.skipped,
            )
        pool = None
        if len(assembly.generic_paths):
            pool = WorkerPool(
                assembly.generic_paths, workers or os.cpu_count() or 1, assembly.generic_pages
            )
        return cls(assembly, pool, version)

    @property
    def campaign_ids(self) -> list[str]:
        """The campaign id of each column (repeated for a campaign's several pages)."""
        return list(self._ids)

    @property
    def page_ids(self) -> list[str]:
        """The landing page id of each column."""
        return list(self._page_ids)

    @property
    def n_compiled(self) -> int:
        """Offer columns scored by the compiled table."""
        return len(self.assembly_.compiled_cols)

    @property
    def n_generic(self) -> int:
        """Offer columns scored by the generic worker pool."""
        return len(self.assembly_.generic_cols)

    def column_of(self, campaign_id: str, page_id: str | None = None) -> int:
        """Column of the offer (``campaign_id``, ``page_id``) in every result
        (``page_id`` None: the campaign's first page); unknown ids are a 404."""
        first = self._first.get(campaign_id) if isinstance(campaign_id, str) else None
        if first is None:
            raise InvalidInput(f"unknown campaign {campaign_id!r}", status=404)
        if page_id is None:
            return first
        column = self._index.get((campaign_id, page_id)) if isinstance(page_id, str) else None
        if column is None:
            raise InvalidInput(
                f"campaign {campaign_id!r} has no landing page {page_id!r}", status=404
            )
        return column

    def campaign(self, campaign_id: str) -> Campaign:
        """The campaign ``campaign_id``; unknown ids are a 404."""
        return self.offers[self.column_of(campaign_id)].campaign

    def canonical(self, profiles: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Canonical profiles of raw or canonical request dicts."""
        if isinstance(profiles, dict) or not isinstance(profiles, list | tuple):
            raise InvalidInput("expected a list of profile objects")
        return [extract_profile(_as_dict(p)) for p in profiles]

    def predict_proba(self, profiles: list[dict[str, Any]]) -> np.ndarray:
        """P(sale) of every offer; shape (n_profiles, n_offers), float64."""
        canonical = self.canonical(profiles)
        if len(canonical) == 1:  # the per-request path: no batch machinery
            return self._score(canonical, self.space.indices(canonical[0])[None, :])
        return self._score(canonical, self.space.indices_many(canonical))

    def predict_proba_slots(self, canonical: list[dict[str, Any]], slots: np.ndarray) -> np.ndarray:
        """P(sale) for already-canonical profiles and their slots (n, n_fields).

        For callers that extracted the profiles already (the HTTP service needs
        the canonical fields and slots anyway): no second extraction.
        """
        return self._score(canonical, np.asarray(slots, dtype=np.intp).reshape(len(canonical), -1))

    def eligible(self, profiles: list[dict[str, Any]]) -> np.ndarray:
        """Which offers may serve each profile; shape (n_profiles, n_offers), bool."""
        canonical = self.canonical(profiles)
        return self.eligibility_.many(self.space.indices_many(canonical))

    def decide(self, profile: dict[str, Any], *, top: int = 10) -> Decision:
        """Best eligible offer for one request, with the top-``top`` ranking."""
        canonical = extract_profile(_as_dict(profile))
        slots = self.space.indices(canonical)
        proba = self._score([canonical], slots[None, :])[0]
        return self.decision_from(proba, self.eligibility_.one(slots), top=top)

    def decision_from(self, proba: np.ndarray, mask: np.ndarray, *, top: int = 10) -> Decision:
        """Rank eligible offers by expected value given their probabilities."""
        columns, n_eligible = self.rank(proba, mask, top)
        ranking = self.ranked(proba, columns)
        best = self.offers[columns[0]]
        return Decision(
            campaign_id=best.campaign.id,
            landing_page_id=best.page.id,
            landing_page=best.page.url,
            probability=ranking[0].probability,
            payout=best.campaign.payout,
            expected_value=ranking[0].expected_value,
            ranking=tuple(ranking),
            n_eligible=n_eligible,
            model_version=self.version,
        )

    def rank(self, proba: np.ndarray, mask: np.ndarray, top: int) -> tuple[list[int], int]:
        """The ``top`` eligible columns by expected value, best first, and how many are
        eligible; raises :class:`NoEligibleCampaign` when none is."""
        order, n_eligible = kernel.top_expected_value(proba, self.payouts_, mask, max(top, 1))
        if n_eligible == 0:
            raise NoEligibleCampaign("no active campaign targets this request")
        return order.tolist(), n_eligible

    def ranked(self, proba: np.ndarray, columns: list[int]) -> list[RankedOffer]:
        """The offers of ``columns`` with their P(sale) (``proba``) and expected value."""
        ids, pages, payouts = self._ids, self._page_ids, self.payouts_
        return [
            RankedOffer(ids[c], pages[c], float(proba[c]), float(proba[c] * payouts[c]))
            for c in columns
        ]

    def _score(self, canonical: list[dict[str, Any]], slots: np.ndarray) -> np.ndarray:
        assembly = self.assembly_
        out = np.empty((len(slots), len(self.offers)), dtype=np.float64)
        if assembly.all_compiled:
            if len(slots) == 1:  # the per-request path: skip the batch loop's dispatch
                kernel.probabilities_one(assembly.table, slots[0], out[0])
            else:
                kernel.probabilities_many(assembly.table, slots, out)
            return out
        if self.n_compiled:
            compiled = np.empty((len(slots), self.n_compiled), dtype=np.float64)
            kernel.probabilities_many(assembly.table, slots, compiled)
            out[:, assembly.compiled_cols] = compiled
        if self.pool_ is not None:
            out[:, assembly.generic_cols] = self.pool_.predict(canonical)
        return out

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the compiled table and the eligibility tables."""
        tables = sum(t.nbytes for t in self.eligibility_.tables_.values())
        return int(self.assembly_.table.nbytes + tables + self.payouts_.nbytes)

    def close(self) -> None:
        """Stop the generic worker processes, if any."""
        if self.pool_ is not None:
            self.pool_.close()
            self.pool_ = None

    def __enter__(self) -> ModelBank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ModelBank(version={self.version!r}, campaigns={len(self.campaigns)}, "
            f"offers={len(self.offers)}, "
            f"compiled={self.n_compiled}, generic={self.n_generic})"
        )


def _assemble_directory(
    root: Path, *, compile: bool, memo: CompileMemo | None, trust: ModelTrust | None
) -> tuple[Assembly, str]:
    loaded = read_directory(root, memo, trust)
    if not loaded.campaigns:
        raise ModelLoadError(f"{root}: no campaign could be loaded", loaded.problems)
    return assemble(loaded, compile=compile, memo=memo), loaded.version


def _as_dict(profile: Any) -> dict[str, Any]:
    if not isinstance(profile, dict):
        raise InvalidInput(f"a profile must be a JSON object, got {type(profile).__name__}")
    return profile
