"""The project's exception tree.

Every error a user can cause derives from :class:`ClickrouterError` and carries
the HTTP status an API should answer with, so the HTTP layer maps any of them
to a JSON ``{"error": ...}`` response without knowing the stage that raised it.
"""

from __future__ import annotations


class ClickrouterError(Exception):
    """Root of the project's errors; ``status`` is the HTTP status to answer with."""

    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class InvalidInput(ClickrouterError):
    """A request, file or argument the caller sent is malformed (HTTP 400)."""

    status = 400


class NotFound(ClickrouterError):
    """The thing asked for does not exist (HTTP 404)."""

    status = 404


class NoEligibleCampaign(ClickrouterError):
    """Targeting and activity flags exclude every campaign for this request (HTTP 404)."""

    status = 404


class ModelLoadError(ClickrouterError):
    """A model directory could not be loaded; ``problems`` lists every reason found."""

    status = 422

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems or [])
