"""The notifier's settings (COPYTRADE_WEBHOOK_*, environment and `.env`), apart from
services.infra.settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.infra.settings import ProjectSettings


class WebhookSettings(ProjectSettings):
    model_config = SettingsConfigDict(env_prefix="COPYTRADE_WEBHOOK_")

    # Attempts per delivery; past the last, the delivery is `failed` (a permanent failure).
    max_attempts: int = Field(default=8, ge=1, le=50)
    # Backoff after attempt n: min(backoff_s * 2^(n-1), backoff_max_s).
    backoff_s: float = Field(default=2.0, gt=0, le=3600)
    backoff_max_s: float = Field(default=900.0, gt=0, le=86_400)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Destinations in private, loopback, link-local or reserved ranges: refused in production
    # always; allowed in development unless this is false.
    allow_private_in_development: bool = True

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s))
