"""The live ModelBank and its hot reload.

:class:`BankHolder` owns the reference to the bank in service. A reload builds
the new bank in a worker thread beside the old one (the event loop keeps
answering with the old bank), swaps the reference in one assignment on the
event loop, then closes the old bank. Request handlers read the reference once
and score synchronously, so no request ever sees a closed bank. A version that
fails to load is rejected: the old bank keeps serving and the failure is
counted. :class:`ReloadWatcher` polls the store's ``CURRENT`` pointer.

At start-up there is no old bank: when the version ``CURRENT`` names does not
load, the holder serves the newest version published before it that does
(names sort by publication time), and lists the versions it passed over with
the reason each failed. Polling goes on watching ``CURRENT`` and swaps to it
as soon as it names a version that loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from clickrouter.config import BANK_CACHE_KEEP
from clickrouter.errors import ClickrouterError, ModelLoadError
from clickrouter.modelstore import Manifest, ModelStore, read_version, resolve_model_dir
from clickrouter.processes import exit_with_parent
from clickrouter.serving.bank import ModelBank
from clickrouter.serving.cache import directory_key, prune_cache
from clickrouter.serving.trust import ModelTrust

log = logging.getLogger(__name__)

_REASON_CHARS = 1000  # a version with thousands of bad files has a long error


@dataclass(frozen=True)
class SkippedVersion:
    """A store version passed over at start-up because it failed to load."""

    version: str
    reason: str


@dataclass(frozen=True)
class LiveBank:
    """A loaded bank with what the service reports about it."""

    bank: ModelBank
    directory: Path
    store_version: str | None
    loaded_at: float  # epoch seconds
    load_seconds: float
    manifest: Manifest = field(default_factory=Manifest)  # empty for a directory without one
    campaigns_body: bytes = b""  # the /v1/campaigns answer, encoded once per version

    @property
    def version(self) -> str:
        return self.bank.version


def load_live_bank(
    models_path: Path,
    cache_dir: Path | None,
    version: str | None = None,
    trust: ModelTrust | None = None,
) -> LiveBank:
    """Resolve ``models_path`` (directory or store) and load its bank (blocking).

    ``version``: this version of the store rather than the one ``CURRENT`` names.
    """
    if version is None:
        directory, store_version = resolve_model_dir(models_path)
    else:
        directory, store_version = ModelStore(models_path).path_of(version), version
    started = time.perf_counter()
    bank = _load_bank(directory, cache_dir, trust)
    bank.predict_proba([{}])  # warm up (JIT, caches) here rather than on the first request
    return LiveBank(
        bank=bank,
        directory=directory,
        store_version=store_version,
        loaded_at=time.time(),
        load_seconds=time.perf_counter() - started,
        manifest=read_version(directory).manifest or Manifest(),
        campaigns_body=_campaigns_body(bank),
    )


def _load_bank(directory: Path, cache_dir: Path | None, trust: ModelTrust | None) -> ModelBank:
    if cache_dir is not None:
        _compile_in_child(directory, cache_dir, trust)
    bank = ModelBank.from_directory(directory, cache_dir=cache_dir, trust=trust)
    if cache_dir is not None and not isinstance(bank.assembly_.table, np.memmap):
        # this process compiled the version and holds a private table: reopen it from
        # the cache entry it just wrote, so every worker maps the same pages
        bank.close()
        bank = ModelBank.from_directory(directory, cache_dir=cache_dir, trust=trust)
    return bank


def _compile_in_child(directory: Path, cache_dir: Path, trust: ModelTrust | None) -> None:
    """Fill the cache entry of ``directory`` from a child process.

    Compiling thousands of models is seconds of Python work; in a thread of a
    serving process it would hold the GIL and stall the event loop for that
    long. The child compiles, this process then only maps the cached table. If
    the child fails, the caller's own load reports the real error.
    """
    if (cache_dir / directory_key(directory)).is_dir():
        return  # compiled already (by the parent, another worker or an earlier run)
    child = _compile_context().Process(
        target=_compile_into_cache, args=(str(directory), str(cache_dir), os.getpid(), trust)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        log.warning("compiling %s in a child process failed (exit %s)", directory, child.exitcode)


@functools.cache
def _compile_context() -> Any:
    """Where compile children come from: a fork server that has imported the compiler.

    A spawned child re-imports numpy, scikit-learn and the bank on every
    reload (~3 s on an idle core, 6-8 s when serving takes the CPUs), longer
    than the compile itself. The fork server pays that once, on the first
    load; each reload's child is a fork of it, already warm. Forking the
    server's own process instead would copy its threads' locks mid-use.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _compile_into_cache(
    directory: str, cache_dir: str, server_pid: int, trust: ModelTrust | None
) -> None:
    # the fork server is this child's parent, not the server: a killed server
    # would otherwise leave it compiling on (its cache entry is written
    # atomically, so stopping mid-way leaves no half entry)
    exit_with_parent(server_pid)
    try:
        ModelBank.from_directory(directory, cache_dir=cache_dir, trust=trust).close()
    except ClickrouterError:
        raise SystemExit(3) from None  # the serving process loads again and reports it


def _campaigns_body(bank: ModelBank) -> bytes:
    # the catalogue leaves defaults out of its entries; the answer states every
    # campaign's "active" and "targeting" so that clients need not know the defaults
    entries = []
    for campaign in bank.campaigns:
        entry = msgspec.to_builtins(campaign)
        entry.setdefault("active", campaign.active)
        entry.setdefault("targeting", {})
        entries.append(entry)
    return msgspec.json.encode({"model_version": bank.version, "campaigns": entries})


class BankHolder:
    """The bank in service and the reload protocol around it.

    on_swap(new, old) is called on the event loop after each successful swap
    (``old`` is None on the first load); on_reject(exc) after a failed load of
    the version ``CURRENT`` names; on_skip(version, reason) for each version
    passed over at start-up. ``prepare(new)`` runs in the loading thread on
    each new bank before it is swapped in (the decision path warms up there);
    a failure of it is logged, never fatal. After a swap the bank cache keeps its
    ``cache_keep`` most recently used entries
    (:func:`~clickrouter.serving.cache.prune_cache`).
    """

    def __init__(
        self,
        models_path: str | Path,
        *,
        cache_dir: str | Path | None = None,
        cache_keep: int = BANK_CACHE_KEEP,
        on_swap: Callable[[LiveBank, LiveBank | None], None] | None = None,
        on_reject: Callable[[BaseException], None] | None = None,
        on_skip: Callable[[str, str], None] | None = None,
        prepare: Callable[[LiveBank], None] | None = None,
        trust: ModelTrust | None = None,
    ) -> None:
        self.models_path = Path(models_path)
        self.trust = trust  # what vouches for pickles besides ownership
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.cache_keep = cache_keep
        self.live: LiveBank | None = None
        self.rejected: str | None = None  # last store version that failed to load
        # while a start-up fallback is served: the versions passed over, newest first
        self.skipped: list[SkippedVersion] = []
        self._on_swap = on_swap
        self._on_reject = on_reject
        self._on_skip = on_skip
        self._prepare = prepare
        self._lock = asyncio.Lock()

    @property
    def is_store(self) -> bool:
        return ModelStore.is_store(self.models_path)

    def store_current(self) -> str | None:
        """The version ``CURRENT`` names now (None for a plain directory)."""
        return ModelStore(self.models_path).current() if self.is_store else None

    def skipped_versions(self) -> list[dict[str, str]]:
        """The versions passed over for the one in service, newest first, with why."""
        return [{"version": s.version, "reason": s.reason} for s in self.skipped]

    async def reload(self) -> LiveBank:
        """Load the current version beside the live one and swap; raise if it fails."""
        async with self._lock:
            try:
                new = await self._load(None)
            except Exception as exc:
                self._reject(exc)
                if isinstance(exc, ClickrouterError):
                    raise
                raise ModelLoadError(f"{self.models_path}: {type(exc).__name__}: {exc}") from exc
            self.rejected = None
            self.skipped = []
            await self._swap(new)
            return new

    async def first_load(self) -> LiveBank:
        """Load the current version or, when it fails, the newest older one that loads.

        Raises the current version's error when no version loads (or the models
        are not a store, or ``CURRENT`` names nothing).
        """
        try:
            return await self.reload()
        except ClickrouterError as exc:
            error = exc
        current = await asyncio.to_thread(self._current_quietly)
        if current is None:
            raise error
        fallback = await self._fall_back(current, _reason(error))
        if fallback is None:
            raise error
        return fallback

    async def _fall_back(self, current: str, reason: str) -> LiveBank | None:
        async with self._lock:
            if self.live is not None:  # an admin reload got there first
                return self.live
            self._skip(current, reason)
            for version in await asyncio.to_thread(self._older_versions, current):
                try:
                    new = await self._load(version)
                except Exception as exc:
                    self._skip(version, _reason(exc))
                    continue
                log.warning(
                    "CURRENT names model version %s, which does not load; serving %s, "
                    "the newest version before it that loads, until CURRENT names one "
                    "that does (passed over: %s)",
                    current,
                    version,
                    "; ".join(f"{s.version}: {s.reason}" for s in self.skipped),
                )
                await self._swap(new)
                return new
            log.error("no version of %s before %s loads either", self.models_path, current)
            return None

    def _skip(self, version: str, reason: str) -> None:
        self.skipped.append(SkippedVersion(version, reason))
        log.warning("model version %s skipped: %s", version, reason)
        if self._on_skip is not None:
            self._on_skip(version, reason)

    def _current_quietly(self) -> str | None:
        try:
            return self.store_current()
        except (OSError, ClickrouterError):
            return None

    def _older_versions(self, current: str) -> list[str]:
        """The store's versions published before ``current``, newest first.

        Never a newer one: after a rollback, the versions above ``CURRENT`` are
        the ones an operator moved away from.
        """
        versions = ModelStore(self.models_path).versions()
        return [v for v in reversed(versions) if v < current]

    async def _load(self, version: str | None) -> LiveBank:
        new = await asyncio.to_thread(
            load_live_bank, self.models_path, self.cache_dir, version, self.trust
        )
        if self._prepare is not None:
            await asyncio.to_thread(self._prepare_quietly, self._prepare, new)
        return new

    async def _swap(self, new: LiveBank) -> None:
        old, self.live = self.live, new
        if self._on_swap is not None:
            self._on_swap(new, old)
        if old is not None:
            old.bank.close()
        log.info("serving model version %s from %s", new.version, new.directory)
        await asyncio.to_thread(self._prune_cache_quietly)

    def _prune_cache_quietly(self) -> None:
        if self.cache_dir is None:
            return
        try:
            deleted = prune_cache(self.cache_dir, self.cache_keep)
        except Exception:  # housekeeping: a failure must not fail the reload
            log.exception("pruning the bank cache %s failed", self.cache_dir)
            return
        if deleted:
            log.info("bank cache: deleted %d versions no longer used", len(deleted))

    def _prepare_quietly(self, prepare: Callable[[LiveBank], None], new: LiveBank) -> None:
        try:
            prepare(new)
        except Exception:  # the warm-up is an optimisation: serve the version regardless
            log.exception("warming up model version %s failed", new.version)

    def _reject(self, exc: BaseException) -> None:
        try:
            self.rejected = self.store_current() or str(self.models_path)
        except ClickrouterError:
            self.rejected = str(self.models_path)
        serving = "previous one keeps serving" if self.live is not None else "none in service"
        log.error("model version %s rejected (%s): %s", self.rejected, serving, exc)
        if self._on_reject is not None:
            self._on_reject(exc)

    async def reload_if_changed(self) -> bool:
        """Reload when ``CURRENT`` names a version neither live nor already rejected."""
        wanted = await asyncio.to_thread(self.store_current)
        live_version = self.live.store_version if self.live is not None else None
        if wanted is not None and wanted == live_version:
            self.skipped = []  # CURRENT was pointed back at the fallback in service
        if wanted is None or wanted in (live_version, self.rejected) or self._lock.locked():
            return False
        try:
            await self.reload()
        except ClickrouterError:
            return False
        return True

    def close(self) -> None:
        if self.live is not None:
            self.live.bank.close()


def _reason(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, ClickrouterError) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


class ReloadWatcher:
    """Polls the model store every ``interval`` seconds and reloads on change."""

    def __init__(self, holder: BankHolder, interval: float) -> None:
        self.holder = holder
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="reload-watcher")

    async def _run(self) -> None:
        if self.holder.live is None:
            await self._first_load()
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.holder.reload_if_changed()
            except Exception:  # a watcher that dies would silently freeze the models
                log.exception("model reload check failed")

    async def _first_load(self) -> None:
        try:
            await self.holder.first_load()
        except ClickrouterError as exc:
            log.error("initial model load failed (not ready until a good version): %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
