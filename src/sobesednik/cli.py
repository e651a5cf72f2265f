"""The `sobesednik` command line: one thin command per stage.

Each command turns its flags into the stage's settings object (flags win over `SOBESEDNIK_…` environment
variables and `.env`) and calls the stage function. This is the one place where a `SobesednikError`
becomes a single line on stderr and an exit code; heavy libraries are imported inside the commands so that
`sobesednik --help` and the bot start fast.

    sobesednik --help
    sobesednik prepare examples/chat_export/result.json --out data/
"""

from __future__ import annotations

from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from rich.console import Console
from typer.core import TyperGroup

from sobesednik import __version__
from sobesednik.errors import ConfigError, SobesednikError

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)
SettingsT = TypeVar("SettingsT", bound=BaseSettings)


class _ErrorsToExitCodes(TyperGroup):
    """Turn the errors a user can fix into one line and an exit code, for every command."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SobesednikError as error:
            _stderr.print(f"[bold red]error:[/] {error}", markup=True)
            raise typer.Exit(error.exit_code) from None


app = typer.Typer(
    cls=_ErrorsToExitCodes,
    help="Your own Russian dialogue model from a Telegram chat export, and a Telegram bot to talk to it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"sobesednik {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True, help="Print the version."),
) -> None:
    """sobesednik: prepare → train → export → serve → bot."""


def build_settings(settings_class: type[SettingsT], **flags: Any) -> SettingsT:
    """Settings from flags (those given, i.e. not None) over the environment; errors become one line."""
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return settings_class(**given)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'settings'}: {problem['msg']}"
            f" (given: {problem.get('input')!r})"
            for problem in error.errors(include_url=False)
        )
        raise ConfigError(f"invalid {settings_class.__name__}: {problems}") from None


@app.command("bot")
def bot_command(
    service_url: str | None = typer.Option(None, help="Base URL of the OpenAI-compatible service."),
    storage: str | None = typer.Option(None, help="History store: sqlite:///path or redis://host:port/db."),
    telegram_api: str | None = typer.Option(None, help="Bot API server base URL (self-hosted or Telegram's)."),
    group_reply_probability: float | None = typer.Option(None, help="Chance to answer unaddressed group messages."),
    context_turns: int | None = typer.Option(None, help="Turns of history sent to the model."),
    context_chars: int | None = typer.Option(None, help="Characters of history sent to the model."),
    max_tokens: int | None = typer.Option(None, help="Reply length in tokens (default: the service's)."),
    webhook_url: str | None = typer.Option(None, help="Public https URL for webhook mode (default: long polling)."),
    webhook_host: str | None = typer.Option(None, help="Interface of the webhook listener."),
    webhook_port: int | None = typer.Option(None, help="Port of the webhook listener."),
    webhook_path: str | None = typer.Option(None, help="Path of the webhook listener."),
) -> None:
    """Run the Telegram bot; the token and other secrets come from SOBESEDNIK_BOT_* variables or .env."""
    flags = dict(locals())
    from sobesednik.bot.main import bot
    from sobesednik.bot.settings import BotSettings

    bot(build_settings(BotSettings, **flags))
