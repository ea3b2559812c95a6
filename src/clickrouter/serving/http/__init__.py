"""The HTTP predictor: decisions, redirects, scores and postbacks over ASGI (uvicorn).

Library use: :class:`PredictorServer` (background thread, loopback port) or
:func:`build_app` (an ASGI app for any server); command line: ``clickrouter serve``.
The names are imported lazily, so building the CLI's command list (which
imports ``clickrouter.cli.serve``) does not import scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clickrouter.serving.http.server import PredictorServer, ServeConfig, build_app, run_server

__all__ = ["PredictorServer", "ServeConfig", "build_app", "run_server"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from clickrouter.serving.http import server

        return getattr(server, name)
    raise AttributeError(f"module 'clickrouter.serving.http' has no attribute {name!r}")
