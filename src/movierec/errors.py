"""One exception hierarchy; only entrypoints turn these into HTTP answers or exit codes."""

from __future__ import annotations


class MovierecError(Exception):
    """Base of every error movierec raises on purpose."""


class ConfigError(MovierecError):
    """A setting is missing or malformed."""


class BadInput(MovierecError):
    """The caller sent something invalid (HTTP 400; never retried)."""


class NotFound(MovierecError):
    """A key, snapshot, model or run does not exist."""


class NotReady(MovierecError):
    """Nothing is published or loaded yet (HTTP 503 with Retry-After)."""


class Overloaded(NotReady):
    """Too much waits already (HTTP 503 with Retry-After): shed load rather than hold it in memory."""


class StoreUnavailable(MovierecError):
    """The store could not be reached; retrying later may succeed (HTTP 5xx)."""


class InvalidRun(MovierecError):
    """A recommendation run is incomplete or breaks an invariant; it must not be published."""
