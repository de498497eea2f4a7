"""Settings, read once from `MOVIEREC_*` environment variables into a frozen dataclass."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from movierec.errors import ConfigError

DEFAULT_STORE = str(Path.home() / ".movierec" / "store")


@dataclass(frozen=True)
class Settings:
    store: str = DEFAULT_STORE
    partitions: int = 8
    top_k: int = 20
    reload_seconds: float = 5.0
    port: int = 8080
    ingest_max_events: int = 5000  # group commit: flush once this many events wait...
    ingest_max_delay_ms: float = 1.0  # ...or this long after the first one arrived
    ingest_future_hours: float = 1.0  # a line dated this much after its arrival is quarantined

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        try:
            settings = cls(
                store=env.get("MOVIEREC_STORE") or DEFAULT_STORE,
                partitions=int(env.get("MOVIEREC_PARTITIONS", cls.partitions)),
                top_k=int(env.get("MOVIEREC_TOP_K", cls.top_k)),
                reload_seconds=float(env.get("MOVIEREC_RELOAD_SECONDS", cls.reload_seconds)),
                port=int(env.get("PORT", cls.port)),
                ingest_max_events=int(env.get("MOVIEREC_INGEST_MAX_EVENTS", cls.ingest_max_events)),
                ingest_max_delay_ms=float(env.get("MOVIEREC_INGEST_MAX_DELAY_MS", cls.ingest_max_delay_ms)),
                ingest_future_hours=float(env.get("MOVIEREC_INGEST_FUTURE_HOURS", cls.ingest_future_hours)),
            )
        except ValueError as exc:
            raise ConfigError(f"bad MOVIEREC_* setting: {exc}") from exc
        if min(settings.partitions, settings.top_k, settings.ingest_max_events) < 1 or settings.reload_seconds <= 0:
            raise ConfigError("MOVIEREC_PARTITIONS, _TOP_K, _RELOAD_SECONDS and _INGEST_MAX_EVENTS must be positive")
        if settings.ingest_max_delay_ms < 0 or not settings.ingest_future_hours >= 0:
            raise ConfigError("MOVIEREC_INGEST_MAX_DELAY_MS and _INGEST_FUTURE_HOURS must not be negative")
        return settings
