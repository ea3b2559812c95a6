"""The live ModelBank and its hot reload.

:class:`BankHolder` owns the reference to the bank in service. A reload builds
the new bank in a worker thread beside the old one (the event loop keeps
answering with the old bank), swaps the reference in one assignment on the
event loop, then closes the old bank. Request handlers read the reference once
and score synchronously, so no request ever sees a closed bank. A version that
fails to load is rejected: the old bank keeps serving and the failure is
counted. :class:`ReloadWatcher` polls the store's ``CURRENT`` pointer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from clickrouter.config import BANK_CACHE_KEEP
from clickrouter.errors import ClickrouterError, ModelLoadError
from clickrouter.modelstore.store import ModelStore, resolve_model_dir
from clickrouter.serving.bank import ModelBank
from clickrouter.serving.cache import directory_key, prune_cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveBank:
    """A loaded bank with what the service reports about it."""

    bank: ModelBank
    directory: Path
    store_version: str | None
    loaded_at: float  # epoch seconds
    load_seconds: float
    manifest: dict[str, Any] = field(default_factory=dict)
    campaigns_body: bytes = b""  # the /v1/campaigns answer, encoded once per version

    @property
    def version(self) -> str:
        return self.bank.version


def load_live_bank(models_path: Path, cache_dir: Path | None) -> LiveBank:
    """Resolve ``models_path`` (directory or store) and load its bank (blocking)."""
    directory, store_version = resolve_model_dir(models_path)
    started = time.perf_counter()
    bank = _load_bank(directory, cache_dir)
    bank.predict_proba([{}])  # warm up (JIT, caches) here rather than on the first request
    return LiveBank(
        bank=bank,
        directory=directory,
        store_version=store_version,
        loaded_at=time.time(),
        load_seconds=time.perf_counter() - started,
        manifest=_read_manifest(directory),
        campaigns_body=_campaigns_body(bank),
    )


def _load_bank(directory: Path, cache_dir: Path | None) -> ModelBank:
    if cache_dir is not None:
        _compile_in_child(directory, cache_dir)
    bank = ModelBank.from_directory(directory, cache_dir=cache_dir)
    if cache_dir is not None and not isinstance(bank.assembly_.table, np.memmap):
        # this process compiled the version and holds a private table: reopen it from
        # the cache entry it just wrote, so every worker maps the same pages
        bank.close()
        bank = ModelBank.from_directory(directory, cache_dir=cache_dir)
    return bank


def _compile_in_child(directory: Path, cache_dir: Path) -> None:
    """Fill the cache entry of ``directory`` from a child process.

    Compiling thousands of models is seconds of Python work; in a thread of a
    serving process it would hold the GIL and stall the event loop for that
    long. The child compiles, this process then only maps the cached table. If
    the child fails, the caller's own load reports the real error.
    """
    if (cache_dir / directory_key(directory)).is_dir():
        return  # compiled already (by the parent, another worker or an earlier run)
    child = _compile_context().Process(
        target=_compile_into_cache, args=(str(directory), str(cache_dir))
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


def _compile_into_cache(directory: str, cache_dir: str) -> None:
    try:
        ModelBank.from_directory(directory, cache_dir=cache_dir).close()
    except ClickrouterError:
        raise SystemExit(3) from None  # the serving process loads again and reports it


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = msgspec.json.decode((directory / "manifest.json").read_bytes())
    except (OSError, msgspec.DecodeError):
        return {}  # optional file; the bank already validated it when present
    return manifest if isinstance(manifest, dict) else {}


def _campaigns_body(bank: ModelBank) -> bytes:
    return msgspec.json.encode({"model_version": bank.version, "campaigns": bank.campaigns})


class BankHolder:
    """The bank in service and the reload protocol around it.

    on_swap(new, old) is called on the event loop after each successful swap
    (``old`` is None on the first load); on_reject(exc) after a failed load.
    After a swap the bank cache keeps its ``cache_keep`` most recently used
    entries (:func:`~clickrouter.serving.cache.prune_cache`).
    """

    def __init__(
        self,
        models_path: str | Path,
        *,
        cache_dir: str | Path | None = None,
        cache_keep: int = BANK_CACHE_KEEP,
        on_swap: Callable[[LiveBank, LiveBank | None], None] | None = None,
        on_reject: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.models_path = Path(models_path)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.cache_keep = cache_keep
        self.live: LiveBank | None = None
        self.rejected: str | None = None  # last store version that failed to load
        self._on_swap = on_swap
        self._on_reject = on_reject
        # run in the loading thread on each new bank before the swap (the service
        # warms its decision path there); a failure is logged, never fatal
        self.prepare: Callable[[LiveBank], None] | None = None
        self._lock = asyncio.Lock()

    @property
    def is_store(self) -> bool:
        return ModelStore.is_store(self.models_path)

    def store_current(self) -> str | None:
        """The version ``CURRENT`` names now (None for a plain directory)."""
        return ModelStore(self.models_path).current() if self.is_store else None

    async def reload(self) -> LiveBank:
        """Load the current version beside the live one and swap; raise if it fails."""
        async with self._lock:
            try:
                new = await asyncio.to_thread(load_live_bank, self.models_path, self.cache_dir)
                if self.prepare is not None:
                    await asyncio.to_thread(self._prepare_quietly, new)
            except Exception as exc:
                self._reject(exc)
                if isinstance(exc, ClickrouterError):
                    raise
                raise ModelLoadError(f"{self.models_path}: {type(exc).__name__}: {exc}") from exc
            old, self.live = self.live, new
            self.rejected = None
            if self._on_swap is not None:
                self._on_swap(new, old)
            if old is not None:
                old.bank.close()
            log.info("serving model version %s from %s", new.version, new.directory)
            await asyncio.to_thread(self._prune_cache_quietly)
            return new

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

    def _prepare_quietly(self, new: LiveBank) -> None:
        assert self.prepare is not None
        try:
            self.prepare(new)
        except Exception:  # the warm-up is an optimisation: serve the version regardless
            log.exception("warming up model version %s failed", new.version)

    def _reject(self, exc: BaseException) -> None:
        try:
            self.rejected = self.store_current() or str(self.models_path)
        except ClickrouterError:
            self.rejected = str(self.models_path)
        log.error("model version %s rejected, previous one keeps serving: %s", self.rejected, exc)
        if self._on_reject is not None:
            self._on_reject(exc)

    async def reload_if_changed(self) -> bool:
        """Reload when ``CURRENT`` names a version neither live nor already rejected."""
        wanted = await asyncio.to_thread(self.store_current)
        live_version = self.live.store_version if self.live is not None else None
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
            await self.holder.reload()
        except ClickrouterError as exc:
            log.error("initial model load failed (not ready until a good version): %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
