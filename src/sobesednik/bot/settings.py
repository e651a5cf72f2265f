"""BotSettings: everything `sobesednik bot` reads, from flags, `SOBESEDNIK_BOT_*` variables and `.env`.

    SOBESEDNIK_BOT_TOKEN=123456:ABC... SOBESEDNIK_BOT_SERVICE_URL=http://127.0.0.1:8000 sobesednik bot

Secrets (the bot token, the service API key, the webhook secret) are `SecretStr`: they never reach logs or
error messages. Problems with them raise `ConfigError` directly, so the message cannot echo the value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote_plus, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sobesednik.errors import ConfigError

# BotFather tokens: the bot's numeric id, a colon, 35 url-safe characters (checked loosely: at least 30).
_TOKEN_FORMAT = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{30,}$")
# Telegram's rule for `secret_token` of setWebhook.
_WEBHOOK_SECRET_FORMAT = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_STORAGE_SCHEMES = ("sqlite:///", "redis://", "rediss://", "unix://")


class BotSettings(BaseSettings):
    """Settings of the Telegram bot; validated at construction."""

    model_config = SettingsConfigDict(env_prefix="SOBESEDNIK_BOT_", env_file=".env", extra="ignore")

    # --- Telegram ---
    token: SecretStr | None = Field(None, description=(
        "required: from @BotFather; None only so that its absence gets a clear message"))
    telegram_api: str = Field("https://api.telegram.org",
                              description="Bot API server; a self-hosted telegram-bot-api, or a test fake")

    # --- the generation service (OpenAI-compatible) ---
    service_url: str = Field("http://127.0.0.1:8000", description="where `sobesednik serve` listens by default")
    service_api_key: SecretStr | None = Field(None, description=(
        "sent as `Authorization: Bearer`; None when the service has no key"))
    service_timeout: float = Field(60.0, gt=0, description="seconds for one attempt; CPU generation can be slow")
    service_deadline: float = Field(90.0, gt=0, description="seconds for all retries of one reply before the apology")
    max_tokens: int | None = Field(None, gt=0, description="reply length in tokens; None: the service's default")
    persona: str = Field("", description="the persona (a model id the service lists in /v1/models) of chats "
                                         "that chose none with /persona; empty: the service's default model")

    # --- memory ---
    storage: str = Field("sqlite:///bot-history.sqlite3",
                         description="`sqlite:///path` (relative to cwd) or `redis://host:port/db`")
    history_max_messages: int = Field(200, ge=2, description="stored per chat; older messages are trimmed")
    context_turns: int = Field(10, ge=1,
                               description="turns (after merging one role's runs) sent to the model, reply included")
    context_chars: int = Field(1500, ge=50,
                               description="characters of context; ~ruDialoGPT's 1024-token window with room")

    # --- manners and limits ---
    group_reply_probability: float = Field(0.0, ge=0.0, le=1.0,
                                           description="chance to answer unaddressed group messages")
    rate_limit_messages: int = Field(6, ge=1,
                                     description="replies per user per window; beyond it the user is asked to wait")
    rate_limit_seconds: float = Field(30.0, gt=0, description="the window of the rate limit, seconds")
    max_inflight_per_chat: int = Field(1, ge=1, description="generations running at once in one chat")
    allowed_ids: Annotated[list[int], NoDecode] = Field([], description=(
        "user or chat ids, comma-separated; empty: everyone"))
    flood_retries: int = Field(3, ge=0, description="times one Bot API call is retried after a 429 `retry_after`")

    # --- streaming replies as they are generated ---
    stream: Literal["auto", "off"] = Field(
        "auto",
        description="auto: private replies grow in a draft (sendMessageDraft) and group replies in an edited message "
        "while the model writes; off: every reply is sent once, when it is complete",
    )
    stream_interval: float = Field(
        0.4,
        ge=0.2,
        description="seconds between two drafts of one private reply; Telegram animates drafts, but more than a few "
        "a second per chat draws flood control",
    )
    stream_group_interval: float = Field(
        1.0,
        ge=0.0,
        description="seconds between two edits of a streamed group reply (Telegram allows about one edit a second "
        "per chat); 0: no streaming in groups, the reply is sent once",
    )
    stream_fallback_seconds: float = Field(
        600.0,
        gt=0,
        description="seconds a chat gets complete replies after its drafts failed (a peer that takes no drafts, or "
        "a self-hosted Bot API server without sendMessageDraft) before drafts are tried again",
    )

    # --- answering as the owner (Telegram Business) ---
    business: Literal["off", "suggest", "auto"] = Field(
        "off",
        description="off: ignore business connections; suggest: send the owner each proposed reply to a contact "
        "with send/skip buttons; auto: answer the owner's contacts in the owner's name",
    )
    business_opt_out: Annotated[list[int], NoDecode] = Field(
        [],
        description="user ids of the owner's contacts the bot never answers nor remembers, comma-separated",
    )
    business_quiet_minutes: float = Field(
        30.0,
        ge=0,
        description="minutes after the owner's own message in a chat during which the bot stays silent there, so "
        "it does not talk over the owner",
    )
    business_delay: float = Field(
        3.0,
        ge=0,
        description="seconds the bot shows 'typing…' before an automatic reply, plus 0.05 s per character of it "
        "(capped at 3x), so it reads like a person typing",
    )

    # --- webhook mode (long polling when webhook_url is empty) ---
    webhook_url: str | None = Field(None, description=(
        "public https URL that Telegram calls, e.g. https://bot.example.org/telegram"))
    webhook_secret: SecretStr | None = Field(None,
                                             description="required with webhook_url; checked on every incoming call")
    webhook_host: str = Field("127.0.0.1",
                              description="interface to listen on; 0.0.0.0 inside a container behind a proxy")
    webhook_port: int = Field(8081, ge=1, le=65535, description="port of the webhook listener")
    webhook_path: str = Field("/telegram/webhook",
                              description="path of the listener (a reverse proxy maps webhook_url to it)")

    shutdown_timeout: float = Field(
        30.0,
        gt=0,
        description="seconds a stopping bot waits for replies being generated before it closes; updates still "
        "unanswered then are left for Telegram to deliver again. Keep the container's stop grace period above it",
    )

    # --- health ---
    heartbeat_file: Path | None = Field(
        None,
        description="file touched after every long poll of Telegram, read by `python -m sobesednik.bot.health` "
        "(the container's healthcheck); none: not written. Webhook mode answers GET /healthz instead",
    )

    @field_validator("allowed_ids", "business_opt_out", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        """`1,2` from the environment, and `--allowed-ids 1,2` as well as a repeated flag from the CLI."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(part, str) for part in value):
            return [piece.strip() for part in value for piece in part.split(",") if piece.strip()]
        return value

    @field_validator("telegram_api", "service_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("storage")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        if not value.startswith(_STORAGE_SCHEMES) or value in _STORAGE_SCHEMES[:1]:
            raise ValueError("must be sqlite:///path/to/file.sqlite3 or redis://host:port/db")
        return value

    @field_validator("stream_group_interval")
    @classmethod
    def _group_interval(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("must be 0 (no streaming in groups) or at least 1 second: Telegram allows about one "
                             "edit a second per chat")
        return value

    @field_validator("webhook_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @model_validator(mode="after")
    def _check_secrets(self) -> BotSettings:
        # ConfigError (not ValueError) passes through pydantic unchanged, so no message can include the value.
        if self.token is None or not self.token.get_secret_value().strip():
            raise ConfigError(
                "SOBESEDNIK_BOT_TOKEN is not set: create a bot with @BotFather in Telegram and put its token "
                "into SOBESEDNIK_BOT_TOKEN (environment or .env)"
            )
        if not _TOKEN_FORMAT.match(self.token.get_secret_value().strip()):
            raise ConfigError(
                "SOBESEDNIK_BOT_TOKEN does not look like a bot token (expected digits, a colon and ~35 letters, "
                "digits, '_' or '-', as @BotFather gives it); copy it again without quotes or spaces"
            )
        if self.webhook_url is not None:
            if not self.webhook_url.startswith("https://"):
                raise ConfigError(f"SOBESEDNIK_BOT_WEBHOOK_URL={self.webhook_url!r}: Telegram calls only https URLs")
            secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
            if not _WEBHOOK_SECRET_FORMAT.match(secret):
                raise ConfigError(
                    "SOBESEDNIK_BOT_WEBHOOK_SECRET must be set with a webhook: 1-256 characters of A-Z, a-z, 0-9, "
                    "'_' or '-' (e.g. the output of `openssl rand -hex 32`)"
                )
        return self

    @property
    def token_value(self) -> str:
        """The token for aiogram's `Bot`; never log it."""
        assert self.token is not None  # guaranteed by _check_secrets
        return self.token.get_secret_value().strip()

    def storage_for_logs(self) -> str:
        """The storage URL with every credential redis-py would read from it replaced by `***`."""
        return mask_url(self.storage)


# Query arguments of a Redis URL that are not secrets; redis-py passes every other one to the connection, and
# `password`, `ssl_password` or a name yet unknown may be one: their values are masked.
_PLAIN_QUERY = frozenset({
    "db", "username", "client_name", "protocol", "decode_responses", "encoding", "max_connections",
    "socket_timeout", "socket_connect_timeout", "socket_keepalive", "retry_on_timeout", "health_check_interval",
    "timeout", "ssl_cert_reqs", "ssl_check_hostname", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile",
})


def mask_url(url: str) -> str:
    """`url` with the password of `user:pass@` (a lone `secret@` whole), every query value that may be a secret
    and any fragment replaced by `***`. Credentials end at the last `@`, as for redis-py, and are cut out before
    anything else is parsed: a `#` or `?` inside a password must not leave part of it outside them."""
    scheme, _, rest = url.partition("://")
    userinfo, at, rest = rest.rpartition("@")
    credentials = ""
    if at:
        user, colon, _ = userinfo.partition(":")
        credentials = f"{user}:***@" if colon else "***@"
    parts = urlsplit(f"{scheme}://{rest}")
    pairs = []
    for pair in parts.query.split("&") if parts.query else []:
        key, equals, _ = pair.partition("=")
        pairs.append(pair if unquote_plus(key) in _PLAIN_QUERY else f"{key}{equals}***")
    query = f"?{'&'.join(pairs)}" if pairs else ""
    fragment = "#***" if parts.fragment else ""
    return f"{scheme}://{credentials}{parts.netloc}{parts.path}{query}{fragment}"
