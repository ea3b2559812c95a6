"""The HTTP predictor: decisions, redirects, scores and postbacks over ASGI (uvicorn).

Library use: :class:`PredictorServer` (background thread, loopback port) or
:func:`build_app` (an ASGI app for any server); command line: ``clickrouter serve``.
The names are imported lazily, so building the CLI's command list (which
imports ``clickrouter.cli.serve``) does not import scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clickrouter.lazy import lazy_exports

if TYPE_CHECKING:
    from clickrouter.serving.http.postback_auth import signed_query
    from clickrouter.serving.http.server import PredictorServer, ServeConfig, build_app, run_server

_SERVER = "clickrouter.serving.http.server"
__getattr__ = lazy_exports(
    __name__,
    {
        "PredictorServer": _SERVER,
        "ServeConfig": _SERVER,
        "build_app": _SERVER,
        "run_server": _SERVER,
        "signed_query": "clickrouter.serving.http.postback_auth",
    },
)
__all__ = ["PredictorServer", "ServeConfig", "build_app", "run_server", "signed_query"]
