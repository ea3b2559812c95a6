"""The HTTP predictor: decisions, redirects, scores and postbacks over ASGI (uvicorn).

Library use: :class:`PredictorServer` (background thread, loopback port) or
:func:`build_app` (an ASGI app for any server); command line: ``clickrouter serve``.
"""

from clickrouter.serving.http.server import PredictorServer, ServeConfig, build_app, run_server

__all__ = ["PredictorServer", "ServeConfig", "build_app", "run_server"]
