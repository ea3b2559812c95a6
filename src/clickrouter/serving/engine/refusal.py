"""The refusal of a postback: the error every check of a sale raises.

The engine's checks (the click id's MAC, the sale's time) and the HTTP
layer's authentication raise the same error, so a transport answers each with
its status and counts it by its ``reason``.
"""

from __future__ import annotations

from clickrouter.errors import ClickrouterError


class PostbackRefused(ClickrouterError):
    """A postback refused before it reaches the event log; ``reason`` labels the metric."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message, status=status)
        self.reason = reason
