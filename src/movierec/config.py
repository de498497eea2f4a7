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
            )
        except ValueError as exc:
            raise ConfigError(f"bad MOVIEREC_* setting: {exc}") from exc
        if settings.partitions < 1 or settings.top_k < 1 or settings.reload_seconds <= 0:
            raise ConfigError("MOVIEREC_PARTITIONS, MOVIEREC_TOP_K and MOVIEREC_RELOAD_SECONDS must be positive")
        return settings
