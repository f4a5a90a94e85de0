"""Settings through pydantic-settings: the environment, a `.env` file, precedence, refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.infra.settings import Settings, SettingsError
from services.infra.webhook_settings import WebhookSettings


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A working directory of its own and no COPYTRADE_* variable from the test process."""
    for name in list(os.environ):
        if name.startswith("COPYTRADE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_env_file_is_read(clean: Path) -> None:
    (clean / ".env").write_text(
        "# a comment\n"
        "COPYTRADE_API_PORT=8123\n"
        'COPYTRADE_ALLOWED_ORIGINS="https://a.example,https://b.example"\n'
        "COPYTRADE_REFRESH_TOKEN_TTL_S=3600\n"
        "COPYTRADE_WEBHOOK_MAX_ATTEMPTS=3\n"
        "UNRELATED=1\n"
    )
    settings = Settings.from_env()
    assert settings.api_port == 8123
    assert settings.allowed_origins == "https://a.example,https://b.example"
    assert settings.refresh_token_ttl_s == 3600
    assert settings.workers == 2  # not in the file: the default
    assert WebhookSettings.from_env().max_attempts == 3


def test_the_environment_overrides_the_env_file(
    clean: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean / ".env").write_text("COPYTRADE_API_PORT=8123\nCOPYTRADE_WORKERS=5\n")
    monkeypatch.setenv("COPYTRADE_API_PORT", "8124")
    monkeypatch.setenv("COPYTRADE_WORKERS", "")  # empty counts as unset: the file's value
    settings = Settings.from_env()
    assert (settings.api_port, settings.workers) == (8124, 5)


def test_another_env_file_by_name(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean / ".env").write_text("COPYTRADE_API_PORT=8123\n")
    (clean / "staging.env").write_text("COPYTRADE_API_PORT=8125\n")
    monkeypatch.setenv("COPYTRADE_ENV_FILE", str(clean / "staging.env"))
    assert Settings.from_env().api_port == 8125


def test_an_explicit_mapping_is_all_that_is_read(clean: Path) -> None:
    (clean / ".env").write_text("COPYTRADE_API_PORT=8123\n")
    assert Settings.from_env({"COPYTRADE_WORKERS": "3"}).api_port == 8000
    assert Settings.from_env({"COPYTRADE_WORKERS": "3"}).workers == 3


@pytest.mark.parametrize(
    ("line", "variable"),
    [
        ("COPYTRADE_API_PORT=eighty", "COPYTRADE_API_PORT"),
        ("COPYTRADE_ACCESS_TOKEN_TTL_S=5", "COPYTRADE_ACCESS_TOKEN_TTL_S"),
        ("COPYTRADE_ENVIRONMENT=staging-7", "COPYTRADE_ENVIRONMENT"),
        ("COPYTRADE_REFRESH_TOKEN_TTL_S=-1", "COPYTRADE_REFRESH_TOKEN_TTL_S"),
    ],
)
def test_an_invalid_value_names_its_variable(clean: Path, line: str, variable: str) -> None:
    (clean / ".env").write_text(line + "\n")
    with pytest.raises(SettingsError) as refused:
        Settings.from_env()
    assert variable in str(refused.value)
    assert line.split("=", 1)[1] not in str(refused.value).replace(variable, "")


def test_an_invalid_webhook_value_names_its_variable(
    clean: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COPYTRADE_WEBHOOK_TIMEOUT_S", "0")
    with pytest.raises(SettingsError, match="COPYTRADE_WEBHOOK_TIMEOUT_S"):
        WebhookSettings.from_env()


def test_production_refusals_apply_to_the_env_file(clean: Path) -> None:
    (clean / ".env").write_text("COPYTRADE_ENVIRONMENT=production\nCOPYTRADE_DEMO_FOLLOWERS=5\n")
    with pytest.raises(SettingsError, match="production refuses the demo"):
        Settings.from_env()
    (clean / ".env").write_text("COPYTRADE_ENVIRONMENT=production\nCOPYTRADE_SIMULATOR=true\n")
    with pytest.raises(SettingsError, match="COPYTRADE_SIM_ADMIN_KEY"):
        Settings.from_env()
    (clean / ".env").write_text(
        "COPYTRADE_ENVIRONMENT=production\nCOPYTRADE_JWT_SECRET=short\n"
        "COPYTRADE_CREDENTIAL_KEYS=k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    )
    with pytest.raises(SettingsError, match="at least 32"):
        Settings.from_env().require_secrets()


def test_broker_urls_are_json_of_known_brokers_and_http_urls() -> None:
    urls = Settings.from_env({"COPYTRADE_BROKER_URLS": '{"binance": "https://testnet.example"}'})
    assert urls.broker_urls == {"binance": "https://testnet.example"}
    for bad in ('{"nyse": "https://x.example"}', '{"kite": "ftp://x.example"}', "not json"):
        with pytest.raises(SettingsError, match="COPYTRADE_BROKER_URLS"):
            Settings.from_env({"COPYTRADE_BROKER_URLS": bad})
