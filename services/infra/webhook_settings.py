"""The notifier's settings (COPYTRADE_WEBHOOK_*), apart from services.infra.settings."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field


class WebhookSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Attempts per delivery; past the last, the delivery is `failed` (a permanent failure).
    max_attempts: int = Field(default=8, ge=1, le=50)
    # Backoff after attempt n: min(backoff_s * 2^(n-1), backoff_max_s).
    backoff_s: float = Field(default=2.0, gt=0, le=3600)
    backoff_max_s: float = Field(default=900.0, gt=0, le=86_400)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Destinations in private, loopback, link-local or reserved ranges: refused in production
    # always; allowed in development unless this is false.
    allow_private_in_development: bool = True

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WebhookSettings:
        env = os.environ if environ is None else environ
        values = {
            name: env[f"COPYTRADE_WEBHOOK_{name.upper()}"]
            for name in cls.model_fields
            if env.get(f"COPYTRADE_WEBHOOK_{name.upper()}")
        }
        return cls.model_validate(values)

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s))
