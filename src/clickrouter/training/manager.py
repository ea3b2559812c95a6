"""TrainingManager: one training cycle = read, fit per campaign, judge, publish.

A cycle retrains the catalogue campaigns whose data changed since the live
version (per ``data_version``; every campaign when the training settings
changed), carries every other campaign's file over, and
publishes the result as a new immutable store version before switching
``CURRENT``. It holds the store's writer lock and first removes whatever a
killed writer left in staging, so a cycle after a crash starts clean while
``CURRENT`` never stopped pointing at a complete version.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
from rich.console import Console

from clickrouter.catalogue import Campaign, load_catalog
from clickrouter.datastore import RECORD_SCHEMA
from clickrouter.errors import ClickrouterError, InvalidInput
from clickrouter.features import FeatureSpace
from clickrouter.modelstore import ModelStore
from clickrouter.posteriors import SUFFIX as POSTERIOR_SUFFIX
from clickrouter.training.data import TrainingData
from clickrouter.training.design import build_space, column_offsets, encode_columns
from clickrouter.training.executors import make_executor
from clickrouter.training.fitting import FitResult, FitSettings
from clickrouter.training.late import FEEDBACK_COLUMNS, DelayedFeedback
from clickrouter.training.models import Transformers, base_rate_pipeline, feature_transformer
from clickrouter.training.plan import (
    Served,
    changed,
    cold_record,
    drifted_cold,
    jsonable,
    placement,
)
from clickrouter.training.plan import carried as carried_over
from clickrouter.training.publish import Placement, publish, space_spec
from clickrouter.training.report import CycleReport, Stopwatch, cycle_report, progress_bar
from clickrouter.training.scan import committed_files, file_versions, scan
from clickrouter.training.settings import TrainingSettings
from clickrouter.training.shared import attach_shared_effects
from clickrouter.training.tasks import campaign_tasks, chunked, pooled_rate

# above this share of campaigns to retrain, one scan beats per-campaign reads
_SCAN_ALL_SHARE = 0.25


def cold_placements(ids: list[str], rate: float, reason: str) -> list[Placement]:
    """A base-rate model of ``rate`` for each campaign of ``ids``, reading no page: the
    same small file for all (an empty feature space), compiled once by the predictor."""
    transformer = feature_transformer(build_space(pd.DataFrame()))
    return [
        Placement(c, cold_record(rate, reason), model=base_rate_pipeline(transformer, rate))
        for c in ids
    ]


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (restored as it was after).

    A cycle allocates a record dict, a placement and a path per campaign
    while the process holds many long-lived objects (the frame, the catalogue,
    in the lab the simulated world), so the collector's full passes, each
    scanning all of them, would cost a good share of the cycle and free
    little: reference counting frees what a cycle drops, and whatever cyclic
    garbage it leaves is collected on the next pass after the block.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class TrainingManager:
    """Continuously retrains one model per campaign into a :class:`ModelStore`.

    data: a :class:`~clickrouter.training.data.TrainingData` (the DataManager);
        None is enough for :meth:`publish_cold_start`.
    store: the model store (or its directory).
    catalog: campaigns, or the path of a ``campaigns.json`` re-read every
        cycle (campaigns come and go), or None for the live version's own.
    dask_scheduler: run the fits on this Dask cluster instead of local processes
        (``dask_timeout``: seconds to wait for it); "local" starts a cluster of
        ``settings.workers`` processes for each cycle's fits.
    console: where to draw the progress bar (None: silent).
    """

    def __init__(
        self,
        data: TrainingData | None,
        store: ModelStore | str | Path,
        catalog: list[Campaign] | str | Path | None = None,
        settings: TrainingSettings | None = None,
        *,
        dask_scheduler: str | None = None,
        dask_timeout: float = 30.0,
        console: Console | None = None,
    ) -> None:
        self._data = data
        self.store = store if isinstance(store, ModelStore) else ModelStore(store)
        self.catalog = catalog
        self.settings = settings or TrainingSettings()
        self.dask_scheduler = dask_scheduler
        self.dask_timeout = dask_timeout
        self.console = console
        self._files: dict[str, list[Path]] | None = None  # the source's files, per cycle
        self._late: DelayedFeedback | None = None  # made on the first cycle (needs data)
        self._transformers: Transformers | None = None  # the last cycle's, for its space

    @property
    def data(self) -> TrainingData:
        if self._data is None:
            raise InvalidInput("no training data given to the TrainingManager")
        return self._data

    def load_catalog(self) -> list[Campaign]:
        """The campaigns to have models for this cycle."""
        source = self.catalog
        if isinstance(source, list):
            return source
        if source is None:
            live = self.store.current()
            if live is None:
                raise InvalidInput("no campaign catalogue: give campaigns.json (store is empty)")
            source = self.store.path_of(live) / "campaigns.json"
        campaigns, problems = load_catalog(Path(source))
        if problems:
            raise InvalidInput(f"{source}: " + "; ".join(problems[:10]))
        return campaigns

    def publish_cold_start(self, catalog: list[Campaign] | None = None) -> CycleReport:
        """Publish base-rate models (``cold_start_rate``) for every campaign; no data needed."""
        started = time.perf_counter()
        campaigns = catalog if catalog is not None else self.load_catalog()
        with self.store.writer_lock():
            self.store.clean_staging()
            rate = self.settings.cold_start_rate
            placements = cold_placements([c.id for c in campaigns], rate, "no data yet")
            space = build_space(pd.DataFrame())
            content = self._content(space, None, None, pd.Series(dtype="float64"), None)
            version = self._go_live(campaigns, placements, content)
        return CycleReport(
            version,
            True,
            campaigns=len(campaigns),
            base_rate=len(campaigns),
            seconds=time.perf_counter() - started,
        )

    def run_cycle(self, now: float | None = None) -> CycleReport:
        """Retrain changed campaigns on the window ending at ``now`` and publish."""
        started = time.perf_counter()
        with self.store.writer_lock(), collector_paused():
            self.store.clean_staging()
            report = self._cycle(time.time() if now is None else float(now))
        report.seconds = time.perf_counter() - started
        return report

    def watch(
        self,
        every: float,
        *,
        cycles: int | None = None,
        on_report: Any = None,
        on_error: Any = None,
    ) -> None:
        """Run a cycle every ``every`` seconds (``cycles`` times, or forever).

        A cycle that fails with a :class:`ClickrouterError` (store busy, Dask
        cluster unreachable, a bad catalogue) goes to ``on_error`` (default:
        printed on the console) and the loop carries on: the live version is
        untouched, and the next cycle may well succeed.
        """
        done = 0
        while cycles is None or done < cycles:
            began = time.monotonic()
            try:
                report = self.run_cycle()
            except ClickrouterError as exc:
                (on_error or self._print_error)(exc)
            else:
                if on_report is not None:
                    on_report(report)
            done += 1
            if cycles is None or done < cycles:
                time.sleep(max(0.0, every - (time.monotonic() - began)))

    def _print_error(self, exc: ClickrouterError) -> None:
        if self.console is not None:
            self.console.print(f"[red]training cycle failed:[/red] {exc.message}")

    # -- one cycle ---------------------------------------------------------

    def _cycle(self, now: float) -> CycleReport:
        clock = Stopwatch()
        catalog = self.load_catalog()
        served = self._served()
        ids = [c.id for c in catalog]
        self._files = committed_files(self.data)
        late = self._delayed_feedback()
        window = self._window(now)
        versions = self._data_versions(ids)
        if late is not None:
            versions = late.versions(versions, window[0], now)
        resettled = served.settings != jsonable(self.settings.to_dict())
        train = [c for c in ids if resettled or changed(c, versions, served)]
        refreshed = self._refreshed(ids, set(train), served) if train else set()
        train += [c for c in ids if c in refreshed]
        retrained = set(train)
        carried = [c for c in ids if c not in retrained]
        catalog_bytes = msgspec.json.encode(catalog)
        if not train and served.version is not None and catalog_bytes == served.catalog:
            return CycleReport(served.version, False, campaigns=len(ids), unchanged=len(ids))
        clock.lap("plan")
        frame = self._read(train, versions, *window)
        clock.lap("read")
        space = build_space(frame, min_count=self.settings.min_count)
        cols = encode_columns(frame, space)
        feedback = late.feedback(frame, now) if late is not None else None
        pages = {c.id: tuple(p.id for p in c.pages) for c in catalog}
        tasks = campaign_tasks(
            frame, cols, train, self.settings, served.files, served.records, feedback, pages
        )
        fit_settings = self._fit_settings(space, pooled_rate(tasks, self.settings))
        cold: list[str] = []
        if self.settings.cold_at_prior and any(t.exposure > 0 for t in tasks):
            cold = drifted_cold(carried, versions, served, fit_settings.pooled_rate)
            rewritten = set(cold)
            carried = [c for c in carried if c not in rewritten]
        clock.lap("encode")
        if self.settings.learner == "hierarchical":
            verticals = {c.id: c.vertical for c in catalog}
            attach_shared_effects(tasks, self.settings, fit_settings.n_columns, verticals)
            # a refreshed campaign whose group shares nothing is as it was
            unmoved = {t.campaign_id for t in tasks if not t.global_c} & refreshed
            tasks = [t for t in tasks if t.campaign_id not in unmoved]
            carried += [c for c in ids if c in unmoved]
            clock.lap("shared")
        results = self._fit_all(fit_settings, tasks)
        del tasks, cols
        clock.lap("fit")
        transformers = self._transformers_for(space)
        placements = [
            placement(
                r, transformers, served, versions.get(r.campaign_id), fit_settings.pooled_rate
            )
            for r in results
        ]
        placements += [carried_over(c, served) for c in carried]
        placements += cold_placements(cold, fit_settings.pooled_rate, "no data yet: the prior mean")
        content = self._content(space, *window, frame["ts"], served.version)
        content["pooled_rate"] = fit_settings.pooled_rate
        if late is not None:
            content["delayed_feedback"] = late.summary()
        version = self._go_live(catalog, placements, content)
        clock.lap("publish")
        report = cycle_report(version, ids, results, len(carried), len(frame))
        report.stages = clock.laps
        return report

    def _refreshed(self, ids: list[str], train: set[str], served: Served) -> set[str]:
        """The hierarchical learner's base-rate campaigns without new data.

        Their models score their group's shared effects, which each cycle
        refits on the group's new sales, so they are refitted with the rest
        (a campaign whose group shares nothing this cycle is carried over
        unchanged after all). Cold campaigns are among them: their vertical's
        effects are all there is to tell whom they suit.
        """
        if self.settings.learner != "hierarchical":
            return set()
        records = served.records
        return {
            c
            for c in ids
            if c not in train
            and isinstance(record := records.get(c), dict)
            and record.get("kind") == "base_rate"
        }

    def _transformers_for(self, space: FeatureSpace) -> Transformers:
        """The last cycle's transformers while the feature space is the same: a fitted
        transformer is a function of the space and the page ids alone, and fitting
        them again each cycle costs more than the rest of publishing a fit."""
        kept = self._transformers
        if kept is None or space_spec(kept.space) != space_spec(space):
            kept = self._transformers = Transformers(space)
        return kept

    def _delayed_feedback(self) -> DelayedFeedback | None:
        window = self.settings.attribution_seconds
        if window is not None and self._late is None:
            self._late = DelayedFeedback(self.data, window)
        return self._late

    def _served(self) -> Served:
        version = self.store.current()
        if version is None:
            return Served()
        root = self.store.path_of(version)
        manifest = self.store.manifest(version)
        records = manifest.get("campaigns", {}) if isinstance(manifest, dict) else {}
        files, posteriors = _version_files(root)
        catalog, _ = load_catalog(root / "campaigns.json")
        settings = manifest.get("settings", {}) if isinstance(manifest, dict) else {}
        digests = manifest.get("files", {}) if isinstance(manifest, dict) else {}
        encoded = msgspec.json.encode(catalog)
        return Served(version, files, records, encoded, settings, digests, posteriors)

    def _data_versions(self, ids: list[str]) -> dict[str, str | None]:
        available = set(self.data.campaigns())
        bulk = getattr(self.data, "data_versions", None)  # one read for all, when offered
        if callable(bulk):
            known = bulk()
        elif self._files is not None:
            known = file_versions(self._files)
        else:
            known = {c: self.data.data_version(c) for c in ids if c in available}
        return {c: str(known[c]) if c in available and c in known else None for c in ids}

    def _window(self, now: float) -> tuple[float | None, float | None]:
        if self.settings.window_seconds is None:
            return None, None
        return now - self.settings.window_seconds, now

    def _read(
        self,
        ids: list[str],
        versions: dict[str, str | None],
        start: float | None,
        end: float | None,
    ) -> pd.DataFrame:
        with_data = [c for c in ids if versions.get(c) is not None]
        if not with_data:
            return RECORD_SCHEMA.empty_table().to_pandas()
        if self._files is not None:
            extra = FEEDBACK_COLUMNS if self._late is not None else ()
            frame = scan(self.data, self._files, with_data, start, end, extra)
            if frame is not None:
                return frame
        if len(with_data) > _SCAN_ALL_SHARE * max(1, len(versions)):
            frame = self.data.read_all(start, end)
            return frame[frame["campaign_id"].isin(with_data)].reset_index(drop=True)
        parts = [self.data.read_training_set(c, start, end) for c in with_data]
        return pd.concat(parts, ignore_index=True)

    def _fit_settings(self, space: Any, pooled: float) -> FitSettings:
        s = self.settings
        return FitSettings(
            space=space_spec(space),
            n_columns=int(column_offsets(space)[-1]),
            c_grid=s.c_grid,
            positive_weight=s.positive_weight,
            min_positives=s.logistic_min_positives,
            prior_positives=s.prior_positives,
            pooled_rate=pooled,
            guard_tolerance=s.guard_tolerance,
            max_iter=s.max_iter,
            guard_min_positives=s.guard_min_positives,
            hour_harmonics=s.hour_harmonics,
            c_regrid_growth=s.c_regrid_growth,
            recent_prior_sales=s.recent_prior_sales,
            posterior=s.posterior,
        )

    def _fit_all(self, fit_settings: FitSettings, tasks: list[Any]) -> list[FitResult]:
        if not tasks:
            return []
        executor = make_executor(self.settings.workers, self.dask_scheduler, self.dask_timeout)
        results: list[FitResult] = []
        try:
            with progress_bar(self.console, len(tasks)) as bar:
                for chunk in executor.run(fit_settings, chunked(tasks, executor.workers)):
                    results.extend(chunk)
                    bar.advance(len(chunk))
        finally:
            executor.close()
        return sorted(results, key=lambda r: r.campaign_id)

    def _content(
        self,
        space: Any,
        start: float | None,
        end: float | None,
        ts: pd.Series,
        parent: str | None,
    ) -> dict[str, Any]:
        seen = [float(ts.min()), float(ts.max())] if len(ts) else [None, None]
        return {
            "parent": parent,
            "training_window": {"start": start, "end": end, "first": seen[0], "last": seen[1]},
            "feature_space": space_spec(space),
            "settings": self.settings.to_dict(),
        }

    def _go_live(
        self, catalog: list[Campaign], placements: list[Placement], content: dict[str, Any]
    ) -> str:
        version = publish(self.store, catalog, placements, content)
        self.store.set_current(version)
        self.store.prune(self.settings.keep_versions)
        return version


def _version_files(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """A version's model files and posterior files, each by campaign id."""
    files: dict[str, Path] = {}
    posteriors: dict[str, Path] = {}
    for path in root.iterdir():
        if path.suffix in (".joblib", ".skops"):
            files[path.stem] = path
        elif path.name.endswith(POSTERIOR_SUFFIX):
            posteriors[path.name[: -len(POSTERIOR_SUFFIX)]] = path
    return files, posteriors
