"""Errors of the serving layer; the HTTP API maps each to one status code."""

from __future__ import annotations

from fraudops.core import FraudopsError, InputError


class UnknownTenant(InputError):
    """No deployment plan serves this tenant (HTTP 404)."""


class NotAuthorized(FraudopsError):
    """A missing, unknown or revoked API key, or a key of another tenant (HTTP 401/403)."""

    def __init__(self, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class ModelLoadError(FraudopsError):
    """A model of a plan cannot be loaded or does not fit the workspace's features; the plan
    that names it is refused and the running plan stays."""
