"""Install extras: which optional package each one brings, and the error when one is missing.

The base install is the predictor: ``clickrouter serve`` and ``clickrouter
score`` load a model version and answer with nothing more. The other stages and
the lab need an extra (``pip install 'clickrouter[train]'``); code that reaches
an optional package without its extra raises :class:`MissingExtra`, a one-line
:class:`~clickrouter.errors.ClickrouterError` that names the extra to install,
instead of an ``ImportError`` traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from types import ModuleType

from clickrouter.errors import ClickrouterError

# the top-level modules of the optional packages each extra installs
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "consume": ("pyarrow", "rich"),
    "train": ("pyarrow", "rich", "dask", "distributed"),
    "redis": ("redis", "hiredis"),
    "demo": ("matplotlib", "pyarrow", "rich"),
}

# the extra a command needs beyond the base install (absent: the base is enough)
COMMAND_EXTRAS: dict[str, str] = {
    "consume": "consume",
    "train": "train",
    "models": "train",
    "simulate": "demo",
    "demo": "demo",
    "replay": "demo",
    "evaluate": "demo",
}


class MissingExtra(ClickrouterError):
    """An optional package is not installed; the message names the extra that brings it."""


def missing_extra(user: str, extra: str, module: str) -> MissingExtra:
    """The error for ``user`` (a module or feature; empty: the command) lacking ``module``."""
    where = f"{user}: " if user else ""
    return MissingExtra(
        f"{where}the {extra!r} extra is not installed (no module {module!r}):"
        f" pip install 'clickrouter[{extra}]'"
    )


def require_extra(extra: str, user: str, modules: Iterable[str] | None = None) -> None:
    """Raise :class:`MissingExtra` unless every module of ``extra`` can be imported.

    Only looks the modules up (no import), so a package ``__init__`` can call it
    to guard every module of the package for the price of a few path lookups.
    ``modules`` narrows the check to the ones ``user`` imports.
    """
    for module in EXTRA_MODULES[extra] if modules is None else modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # an import hook refusing the name
            found = False
        if not found:
            raise missing_extra(user, extra, module)


def import_optional(module: str, extra: str, user: str) -> ModuleType:
    """Import ``module`` (from ``extra``) or raise :class:`MissingExtra` naming the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not _is_module(exc.name, module.partition(".")[0]):
            raise  # the package is there but one of its own imports failed
        raise missing_extra(user, extra, module) from None


def extra_for_command(command: str, exc: ModuleNotFoundError) -> MissingExtra | None:
    """The error to show when ``command`` stopped on ``exc`` (None: not an optional package).

    The command's own extra when it brings the module, else every extra that does
    (the redis client, for instance, is its own extra whatever the command).
    """
    top = (exc.name or "").partition(".")[0]
    extras = [name for name, modules in EXTRA_MODULES.items() if top in modules]
    if not extras:
        return None
    own = COMMAND_EXTRAS.get(command)
    if own in extras:
        return missing_extra("", own, top)
    if len(extras) == 1:
        return missing_extra("", extras[0], top)
    names = ", ".join(f"{name!r}" for name in extras)
    return MissingExtra(
        f"no module {top!r}, which the {names} extras install:"
        f" pip install 'clickrouter[{extras[0]}]'"
    )


def _is_module(name: str | None, top: str) -> bool:
    return name is not None and name.partition(".")[0] == top
