"""Package exports loaded on first use (a module ``__getattr__``, PEP 562).

A package's ``__init__`` names its public API in ``__all__``; importing each
name's module only when the name is first used keeps light importers (the
predictor loading one module of a package, the CLI building its command list)
from paying for heavy dependencies (scikit-learn, pyarrow) they never touch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each name of ``modules`` from its module.

    modules: public name -> dotted name of the module that defines it. A name
    is imported once, then set on the package, so later lookups are plain.
    """

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
