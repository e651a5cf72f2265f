"""BotSettings: required, format-checked token; secrets never echoed; env names; webhook needs a secret."""

from __future__ import annotations

import pytest

from sobesednik.bot.settings import BotSettings
from sobesednik.errors import ConfigError

from .conftest import TOKEN


def test_missing_token_is_a_clear_error():
    with pytest.raises(ConfigError, match="SOBESEDNIK_BOT_TOKEN is not set: create a bot with @BotFather"):
        BotSettings()


def test_malformed_token_error_does_not_echo_it():
    bad = "123456789-notatoken-secretsecretsecretsecret"
    with pytest.raises(ConfigError, match="does not look like a bot token") as error:
        BotSettings(token=bad)
    assert bad not in str(error.value)


def test_env_names_and_allowlist_parsing(monkeypatch):
    monkeypatch.setenv("SOBESEDNIK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SOBESEDNIK_BOT_SERVICE_URL", "http://service:8000/")
    monkeypatch.setenv("SOBESEDNIK_BOT_ALLOWED_IDS", "42, -100123")
    monkeypatch.setenv("SOBESEDNIK_BOT_GROUP_REPLY_PROBABILITY", "0.25")
    settings = BotSettings()
    assert settings.token_value == TOKEN
    assert settings.service_url == "http://service:8000"
    assert settings.allowed_ids == [42, -100123]
    assert settings.group_reply_probability == 0.25
    assert TOKEN not in repr(settings)


def test_env_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"SOBESEDNIK_BOT_TOKEN={TOKEN}\nSOBESEDNIK_BOT_STORAGE=redis://r:6379/1\n")
    assert BotSettings().storage == "redis://r:6379/1"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("storage", "postgres://x", "must be sqlite:///"),
        ("service_url", "127.0.0.1:8000", "must start with http"),
        ("group_reply_probability", 1.5, "less than or equal to 1"),
    ],
)
def test_bad_values_are_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        BotSettings(token=TOKEN, **{field: value})


def test_webhook_needs_https_and_a_secret():
    with pytest.raises(ConfigError, match="Telegram calls only https"):
        BotSettings(token=TOKEN, webhook_url="http://bot.example.org/hook", webhook_secret="s3cret")
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET must be set"):
        BotSettings(token=TOKEN, webhook_url="https://bot.example.org/hook")
    settings = BotSettings(token=TOKEN, webhook_url="https://bot.example.org/hook", webhook_secret="s3cret")
    assert settings.webhook_secret is not None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:hunter2@redis:6379/0", "redis://user:***@redis:6379/0"),
        ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://hunter2@redis:6379/0", "redis://***@redis:6379/0"),
        ("redis://user:hun@ter2@redis/0", "redis://user:***@redis/0"),  # the last @ ends the credentials
        ("redis://user:hun#ter2@redis/0", "redis://user:***@redis/0"),  # '#' in a password: still all of it
        ("redis://user:hun?ter2@redis/0", "redis://user:***@redis/0"),
        ("rediss://default:hunter2@cache.example.org:6380/1", "rediss://default:***@cache.example.org:6380/1"),
        ("redis://redis:6379/0?password=hunter2", "redis://redis:6379/0?password=***"),
        ("redis://redis/0?db=2&pass%77ord=hunter2&ssl_password=hunter2",
         "redis://redis/0?db=2&pass%77ord=***&ssl_password=***"),
        ("unix:///run/redis.sock?db=0&password=hunter2", "unix:///run/redis.sock?db=0&password=***"),
        ("unix://user:hunter2@/run/redis.sock?db=0", "unix://user:***@/run/redis.sock?db=0"),
        ("sqlite:///data/history.sqlite3", "sqlite:///data/history.sqlite3"),
    ],
)
def test_every_storage_credential_is_hidden_in_logs(url, shown):
    settings = BotSettings(token=TOKEN, storage=url)
    assert settings.storage_for_logs() == shown
    assert "hunter2" not in shown and "ter2" not in shown


def test_streaming_and_business_settings_from_env(monkeypatch):
    monkeypatch.setenv("SOBESEDNIK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("SOBESEDNIK_BOT_STREAM", "off")
    monkeypatch.setenv("SOBESEDNIK_BOT_BUSINESS", "suggest")
    monkeypatch.setenv("SOBESEDNIK_BOT_BUSINESS_OPT_OUT", "7, 8")
    settings = BotSettings()
    assert (settings.stream, settings.business, settings.business_opt_out) == ("off", "suggest", [7, 8])


def test_streaming_is_on_and_business_mode_off_by_default():
    settings = BotSettings(token=TOKEN)
    assert (settings.stream, settings.business, settings.business_opt_out) == ("auto", "off", [])


@pytest.mark.parametrize("interval", [0.3, 0.99])
def test_group_stream_interval_is_zero_or_at_least_a_second(interval):
    with pytest.raises(ValueError, match=r"must be 0 \(no streaming in groups\) or at least 1 second"):
        BotSettings(token=TOKEN, stream_group_interval=interval)
    assert BotSettings(token=TOKEN, stream_group_interval=0).stream_group_interval == 0


def test_unknown_stream_mode_is_refused():
    with pytest.raises(ValueError, match="stream"):
        BotSettings(token=TOKEN, stream="fast")
