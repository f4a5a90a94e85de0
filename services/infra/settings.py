"""Settings from COPYTRADE_* environment variables and a `.env` file (pydantic-settings).

Precedence: the process environment, then the `.env` file (in the working directory, or the
file COPYTRADE_ENV_FILE names), then the defaults below. Empty values count as unset. An
invalid value stops the process with a SettingsError naming the variable (never its value: it
may be a secret). Refuses unsafe defaults outside development.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "COPYTRADE_"
ENV_FILE_VARIABLE = "COPYTRADE_ENV_FILE"


class SettingsError(RuntimeError):
    pass


_ONLY_GIVEN: ContextVar[bool] = ContextVar("copytrade_settings_only_given", default=False)


class ProjectSettings(BaseSettings):
    """What every settings class of the project shares: a COPYTRADE_* prefix, `.env`, empty
    values as unset, unknown variables ignored, frozen; `from_env`; readable refusals."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _ONLY_GIVEN.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The process's settings: its environment, then the `.env` file (COPYTRADE_ENV_FILE
        names another). With `environ`, that mapping only (a child's environment, tests)."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        try:
            if environ is None:
                return cls(_env_file=os.environ.get(ENV_FILE_VARIABLE) or ".env")
            token = _ONLY_GIVEN.set(True)
            try:
                return cls(**_from_mapping(cls, environ, prefix))
            finally:
                _ONLY_GIVEN.reset(token)
        except ValidationError as exc:
            raise _invalid(exc, prefix) from None


def _from_mapping(
    kind: type[BaseSettings], environ: Mapping[str, str], prefix: str
) -> dict[str, Any]:
    """The non-empty `<prefix><FIELD>` entries of a mapping, by field name."""
    values: dict[str, Any] = {}
    for name in kind.model_fields:
        value = environ.get(f"{prefix}{name.upper()}")
        if value:
            values[name] = value
    return values


def _invalid(exc: ValidationError, prefix: str) -> SettingsError:
    """A readable refusal: each bad variable by name, with pydantic's reason (never the value:
    it may be a secret)."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        problems.append(f"{prefix}{field.upper()}: {error['msg']}")
    return SettingsError("invalid settings: " + "; ".join(problems))


class Settings(ProjectSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path(".data")
    nats_url: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    # This process's NATS user (one per service role: api, worker, gateway; see
    # services/infra/nats_auth.py) and its password; required in production. A URL with
    # user:password@ in it wins over these.
    nats_user: str | None = None
    nats_password: str | None = None
    # The dashboard gateway's own NATS user (subscribe to events only) inside API processes;
    # unset: it shares the API's connection.
    nats_gateway_password: str | None = None

    # Comma-separated NATS servers (a cluster): "nats://n1:4222,nats://n2:4222,nats://n3:4222".
    # Replicas of every stream: unset → 3 when three or more servers are listed, else 1.
    nats_replicas: int | None = Field(default=None, ge=1, le=5)
    # The embedded launcher's NATS: 1 server, or a cluster of 3 with routes (`make cluster`).
    nats_cluster: int = Field(default=1, ge=1, le=5)

    # 0.0.0.0 in a container; loopback by default on a developer's machine.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # API processes (uvicorn workers); unset → the CPU count in production, 1 in development.
    api_workers: int | None = Field(default=None, ge=1, le=256)
    # A request must arrive within this time of its first byte, its line and headers within this
    # size (services/api/serving.py); past either the connection is closed (431 for the size).
    # Per API process: past this many connections and requests in flight, new requests get 503.
    api_request_timeout_s: float = Field(default=10.0, gt=0, le=300)
    api_head_max_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    api_max_concurrency: int = Field(default=2048, ge=1)
    sim_host: str = "127.0.0.1"
    sim_port: int = 8100
    sim_url: str = "http://127.0.0.1:8100"
    workers: int = Field(default=2, ge=1, le=64)
    demo_followers: int = Field(default=200, ge=0, le=100_000)
    # This process's metrics (and /healthz, /readyz for workers) port; 0 = none. The launcher
    # gives every process its own port from this base (see services/dev/launcher.py).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    jwt_secret: str | None = None
    jwt_issuer: str = "copytrade"
    jwt_audience: str = "copytrade-api"
    access_token_ttl_s: int = Field(default=900, ge=30, le=86_400)
    ws_token_ttl_s: int = Field(default=60, ge=5, le=60)
    # Refresh tokens (rotating, single use): each one lives this long (30 days by default).
    refresh_token_ttl_s: int = Field(default=30 * 86_400, ge=60, le=365 * 86_400)
    # "kid:base64key,kid2:base64key2"; the first key encrypts, all keys decrypt (rotation).
    credential_keys: str | None = None
    # scrypt cost (OWASP: N=2^17, r=8, p=1); tests lower it. Weaker stored hashes are
    # rehashed at the next sign-in.
    password_hash_n: int = Field(default=2**17, ge=2**10, le=2**20)
    # Sign-in attempts per (email, client address) and per address within the window, then
    # backoff (429 + Retry-After); registrations per address per hour. 0 = off.
    login_attempts_per_5min: int = Field(default=20, ge=0)
    login_attempts_per_address_per_5min: int = Field(default=200, ge=0)
    registrations_per_address_per_hour: int = Field(default=20, ge=0)
    # Writes (POST, PUT, PATCH, DELETE) per signed-in user, counted across API processes in
    # Valkey: a token bucket of `write_burst_per_user` refilled at this rate; past it 429
    # rate_limited + Retry-After. 0 = off. Generous by default: the ingest benchmark's one
    # master aims at 1,000 orders/s; lower it where no such client exists.
    writes_per_user_per_s: float = Field(default=1000.0, ge=0)
    write_burst_per_user: int = Field(default=2000, ge=1)
    # Request bodies over this many bytes answer 413 before parsing; 0 = off.
    max_body_bytes: int = Field(default=65_536, ge=0)
    # Dashboard sockets one user may hold open in one API process; 0 = off.
    ws_sockets_per_user: int = Field(default=10, ge=0)
    # None: on in development, off in production (explicitly true to expose them there).
    docs_enabled: bool | None = None
    metrics_enabled: bool | None = None
    # The simulator: started by the launcher in development; in production only when asked,
    # and then its /sim/* routes need this key (X-Sim-Admin-Key).
    simulator: bool | None = None
    sim_admin_key: str | None = None

    consumer_ack_wait_s: float = 30.0
    # No delivery limit: a failing message is nak'd with backoff, never dropped by JetStream;
    # an order still failing after `dead_letter_after` deliveries is parked for the sweeper.
    max_deliver: int = -1
    dead_letter_after: int = Field(default=30, ge=0)
    dead_letter_retry_s: float = Field(default=30.0, ge=0)  # parked this long before a retry
    fetch_batch: int = 16
    max_orders_in_flight: int = 8
    max_shards_in_flight: int = 2
    # The API's database connections, all kept open: an overflow connection closed after each
    # burst costs a new connection (and its TLS negotiation) on the next one.
    api_db_pool: int = Field(default=24, ge=1, le=500)
    # How long the master's broker positions may be reused (services/infra/positions.py); 0 = never.
    master_position_max_age_s: float = Field(default=2.0, ge=0, le=60)
    # Followers per shard: an order's shards are shared by every replicator through JetStream.
    shard_size: int = Field(default=250, ge=1, le=10_000)
    # Legs recorded per transaction inside a shard; the first batch is small so the first
    # followers' orders leave while the rest are still being recorded.
    batch_size: int = Field(default=100, ge=1, le=10_000)
    first_batch: int = Field(default=4, ge=1, le=10_000)  # 4 vs 16: README, issue 13 fifth pass
    leg_lease_s: float = 15.0
    unknown_recheck_s: float = 1.0
    sweep_interval_s: float = 0.5
    resend_grace_s: float = 2.0
    broker_connect_timeout_s: float = 3.0
    broker_read_timeout_s: float = 8.0
    max_concurrent_per_host: int = 500
    allowed_origins: str = ""
    snapshot_deadline_s: float = 2.0
    equity_max_age_s: float = 5.0
    open_leg_refresh_s: float = 10.0
    sim_account_rate_per_min: float = 0.0  # 0: off; 200 mimics Alpaca
    sim_host_rate_per_s: float = 0.0  # 0: no per-host budget for the simulator
    budget_max_wait_s: float = 6.0
    broker_transport: Literal["reqwest", "httpx"] = "reqwest"
    broker_ca_file: str | None = None  # extra trusted roots (the simulator under --tls)
    # Trading API base URL per broker instead of the descriptor's, as JSON: a broker's sandbox
    # or testnet ({"binance": "https://testnet.binance.vision"}), a proxy, or a test venue.
    broker_urls: dict[str, str] = Field(default_factory=dict)
    poll_interval_s: float = Field(default=1.0, gt=0.05, le=3600)

    @field_validator("broker_urls", mode="before")
    @classmethod
    def _json_broker_urls(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known_broker_urls(self) -> Settings:
        from brokers.registry import DESCRIPTORS  # the registry imports no settings

        for broker, url in self.broker_urls.items():
            if broker not in DESCRIPTORS:
                raise ValueError(f"COPYTRADE_BROKER_URLS: unknown broker {broker!r}")
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                raise ValueError(f"COPYTRADE_BROKER_URLS: {broker} needs an http(s) URL")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment != "production":
            return self
        if "demo_followers" in self.model_fields_set and self.demo_followers:
            raise SettingsError(
                "production refuses the demo: unset COPYTRADE_DEMO_FOLLOWERS (or set it to 0); "
                "demo users have published passwords"
            )
        if self.simulator and not self.sim_admin_key:
            raise SettingsError(
                "COPYTRADE_SIMULATOR=true in production needs COPYTRADE_SIM_ADMIN_KEY "
                "(its /sim/* routes are refused without it)"
            )
        return self

    def require_internal_auth(self) -> None:
        """Production: NATS, PostgreSQL and Valkey each need credentials (a URL without a
        password is refused; operators are trusted, the network between hosts is not)."""
        if not self.production:
            return
        missing = []
        if not (self.nats_password or _has_password(self.nats_url)):
            missing.append("COPYTRADE_NATS_PASSWORD (and COPYTRADE_NATS_USER)")
        if not _has_password(self.database_url):
            missing.append("a password in COPYTRADE_DATABASE_URL")
        if not _has_password(self.redis_url):
            missing.append("a password in COPYTRADE_REDIS_URL (redis://:PASSWORD@host)")
        if missing:
            raise SettingsError("production needs internal credentials: " + ", ".join(missing))

    def nats_auth(self) -> tuple[str | None, str | None]:
        """(user, password) for this process's NATS connection."""
        return self.nats_user, self.nats_password

    @property
    def replicator_db_pool(self) -> int:
        """A connection kept open for every order and shard a replicator may work on at once,
        and a few for lease renewals and retries: an overflow connection is closed when given
        back, so a smaller pool opened a connection (TLS, SCRAM, codecs, prepared statements)
        on every other order (README, "Statements on asyncpg")."""
        return self.max_orders_in_flight + self.max_shards_in_flight + 4

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def demo_count(self) -> int:
        """Demo followers to seed: none in production (the validator refuses asking for them)."""
        return 0 if self.production else self.demo_followers

    @property
    def simulator_enabled(self) -> bool:
        return self.simulator if self.simulator is not None else not self.production

    @property
    def docs_on(self) -> bool:
        return self.docs_enabled if self.docs_enabled is not None else not self.production

    @property
    def metrics_on(self) -> bool:
        return self.metrics_enabled if self.metrics_enabled is not None else not self.production

    @property
    def nats_servers(self) -> list[str]:
        """The NATS servers of `nats_url`, in order (a client tries them all)."""
        return [url.strip() for url in (self.nats_url or "").split(",") if url.strip()]

    @property
    def stream_replicas(self) -> int:
        if self.nats_replicas is not None:
            return self.nats_replicas
        return 3 if len(self.nats_servers) >= 3 else 1

    @property
    def api_processes(self) -> int:
        if self.api_workers is not None:
            return self.api_workers
        return (os.cpu_count() or 1) if self.environment == "production" else 1

    def require_urls(self) -> tuple[str, str, str]:
        if not (self.nats_url and self.database_url and self.redis_url):
            raise SettingsError(
                "COPYTRADE_NATS_URL, COPYTRADE_DATABASE_URL and COPYTRADE_REDIS_URL must be set "
                "(the launcher sets them when it starts the embedded servers)"
            )
        self.require_internal_auth()
        return self.nats_url, self.database_url, self.redis_url

    def require_secrets(self) -> tuple[str, str]:
        if not self.jwt_secret or not self.credential_keys:
            raise SettingsError("COPYTRADE_JWT_SECRET and COPYTRADE_CREDENTIAL_KEYS must be set")
        if self.environment == "production" and len(self.jwt_secret) < 32:
            raise SettingsError("COPYTRADE_JWT_SECRET must be at least 32 characters in production")
        return self.jwt_secret, self.credential_keys


def _has_password(url: str | None) -> bool:
    """Every server of a (comma-separated) URL carries a password."""
    parts = [part.strip() for part in (url or "").split(",") if part.strip()]
    return bool(parts) and all(urlsplit(part).password for part in parts)


def development_secrets(data_dir: Path) -> dict[str, str]:
    """Generate (once) and persist development secrets under the data directory, mode 0600."""
    path = data_dir / "dev-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    data_dir.mkdir(parents=True, exist_ok=True)
    generated = {
        "COPYTRADE_JWT_SECRET": secrets.token_urlsafe(48),
        "COPYTRADE_CREDENTIAL_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(generated, handle)
    return generated
