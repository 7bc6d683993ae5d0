"""Domain errors and the HTTP status each one maps to.

Logic raises these instead of HTTPException so it stays usable outside FastAPI
(CLI, tests); api.py turns them into a JSON answer with a reason, never a 500.
"""

from __future__ import annotations


class StartupError(Exception):
    """The module must not start: configuration, manifests or policy disagree."""


class ModuleError(Exception):
    """A request the module refuses; ``status_code`` is the HTTP answer."""

    status_code = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RequestRejected(ModuleError):
    """Well-formed JSON whose content the module cannot accept."""

    status_code = 422


class DataReferenceError(RequestRejected):
    """A ``data_reference`` that cannot be resolved to a list of numbers."""


class PolicyViolation(ModuleError):
    """The doctrine policy (or the manifest) forbids this action."""

    status_code = 403


class NotDeclared(ModuleError):
    """An API path the manifest does not declare: as far as callers know, absent."""

    status_code = 404


class TaskNotFound(ModuleError):
    status_code = 404


class TaskConflict(ModuleError):
    """The task's state does not allow the request (e.g. cancelling a finished task)."""

    status_code = 409


class NotImplementedApi(ModuleError):
    """Declared in the manifest but no processor is registered for it yet."""

    status_code = 501


class NotReady(ModuleError):
    """Starting up or draining: the caller should retry elsewhere or later."""

    status_code = 503


class PlatformUnavailable(ModuleError):
    """A platform service (the registry) is not configured or cannot answer."""

    status_code = 503


class QueueFullError(ModuleError):
    """Back-pressure: too many tasks queued or running."""

    status_code = 503

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
