"""The `sobesednik` command line: one thin command per stage.

Each command turns its flags into the stage's settings object (flags win over `SOBESEDNIK_…` environment
variables and `.env`) and calls the stage function. This is the one place where a `SobesednikError`
becomes a single line on stderr and an exit code; heavy libraries are imported inside the commands so that
`sobesednik --help` and the bot start fast.

    sobesednik --help
    sobesednik prepare examples/chat_export/result.json --out data/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

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


@app.command("prepare")
def prepare_command(
    exports: Annotated[list[Path], typer.Argument(metavar="EXPORT", help="Telegram Desktop result.json file(s).")],
    out: Annotated[Path | None, typer.Option(help="Dataset dir to write (created when missing).")] = None,
    chat: Annotated[list[str] | None, typer.Option(help="Chat (name or id) of a full-account export; repeat.")] = None,
    speaker: Annotated[list[str] | None, typer.Option(help="Only this author's replies (id or name); repeat.")] = None,
    gap_minutes: float | None = typer.Option(None, help="Minutes of silence that start a new conversation."),
    merge_seconds: float | None = typer.Option(None, help="One author's messages this close form one turn."),
    context_turns: int | None = typer.Option(None, help="Turns of context before each reply."),
    min_chars: int | None = typer.Option(None, help="Shortest reply kept, in characters."),
    max_chars: int | None = typer.Option(None, help="Longest turn kept, in characters."),
    keep_forwarded: bool | None = typer.Option(None, "--keep-forwarded/--skip-forwarded", help="Keep forwards."),
    keep_via_bot: bool | None = typer.Option(None, "--keep-via-bot/--skip-via-bot", help="Keep via-bot messages."),
    mask_pii: bool | None = typer.Option(None, "--mask-pii/--no-mask-pii", help="Mask phones, e-mails, @names."),
    valid: float | None = typer.Option(None, help="Share of samples for validation."),
    test: float | None = typer.Option(None, help="Share of samples for the test split."),
    split_by: str | None = typer.Option(None, help="random or time (newest conversations become test)."),
    seed: int | None = typer.Option(None, help="Seed of the random split."),
    show_names: bool | None = typer.Option(None, "--show-names/--hide-names", help="Author names in stats."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help="Progress bar for big inputs."),
) -> None:
    """Turn Telegram exports into train/valid/test.jsonl dialogues with stats (docs/data.md)."""
    flags = dict(locals())
    flags["chat"], flags["speaker"] = chat or None, speaker or None
    from sobesednik.data.prepare import prepare
    from sobesednik.data.settings import PrepareSettings

    result = prepare(build_settings(PrepareSettings, **flags))
    splits = result.stats["splits"]
    typer.echo(f"{result.stats['samples']} samples (train {splits['train']}, valid {splits['valid']}, "
               f"test {splits['test']}) from {result.stats['messages_read']} messages written to {result.out}; "
               f"see {result.out / 'stats.md'}")

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
