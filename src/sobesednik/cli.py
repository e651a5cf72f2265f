"""The `sobesednik` command line: one thin command per stage.

Each command's options are its stage's settings fields (`settings_cli` builds them; flags win over
`SOBESEDNIK_…` environment variables and `.env`); the command calls the stage function and prints the result.
This is the one place where a `SobesednikError` becomes a single line on stderr and an exit code; heavy
libraries are imported inside the commands so that `sobesednik --help` and the bot start fast.

    sobesednik --help
    sobesednik prepare examples/chat_export/result.json --out data/
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from sobesednik import __version__
from sobesednik.api.settings import ApiSettings
from sobesednik.bot.settings import BotSettings
from sobesednik.chat import ChatSettings
from sobesednik.data.settings import PrepareSettings
from sobesednik.demo import DemoSettings
from sobesednik.errors import SobesednikError
from sobesednik.quiet import quiet_libraries
from sobesednik.settings_cli import Given, settings_command
from sobesednik.training.settings import (
    EvaluateSettings,
    ExportSettings,
    TinyModelSettings,
    TrainSettings,
    read_config_file,
)

# One progress display per stage, the command's own: transformers' "Loading weights" and "Writing model shards"
# bars follow huggingface_hub's switch, read when it is first imported (inside the commands, after this line).
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


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


@settings_command(app, "prepare", PrepareSettings)
def prepare_command(given: Given[PrepareSettings]) -> None:
    """Turn Telegram exports into train/valid/test.jsonl dialogues with stats (docs/data.md)."""
    from sobesednik.data.per_speaker import PERSONAS_FILE, prepare_per_speaker
    from sobesednik.data.prepare import prepare

    settings = given.settings()
    if settings.per_speaker:
        personas = prepare_per_speaker(settings)
        typer.echo(f"{len(personas.speakers)} persona dataset(s) ({', '.join(personas.speakers)}), "
                   f"{len(personas.too_few)} author(s) with too few replies, everyone's in {personas.everyone.out}; "
                   f"see {settings.out / PERSONAS_FILE}")
        return
    result = prepare(settings)
    splits = result.stats["splits"]
    typer.echo(f"{result.stats['samples']} samples (train {splits['train']}, valid {splits['valid']}, "
               f"test {splits['test']}) from {result.stats['messages_read']} messages written to {result.out}; "
               f"see {result.out / 'stats.md'}")


@settings_command(app, "tiny-model", TinyModelSettings)
def tiny_model_command(given: Given[TinyModelSettings]) -> None:
    """Build a tiny offline base model (tokenizer + small GPT-2, Llama or Qwen2) from a prepared dataset's text."""
    from sobesednik.training.pretrain import build_tiny_base

    quiet_libraries()
    result = build_tiny_base(given.settings())
    loss = f", final LM loss {result.final_loss:.3f}" if result.final_loss is not None else ""
    typer.echo(f"tiny model written to {result.model_dir} ({result.pretrain_steps} pretraining steps{loss})")


@settings_command(app, "train", TrainSettings)
def train_command(
    given: Given[TrainSettings],
    config: Annotated[Path | None, typer.Option(help="YAML settings file (a run's config.yaml); flags win.")] = None,
) -> None:
    """LoRA-fine-tune a base model on a prepared dataset (accelerate launch / torchrun for several processes)."""
    from sobesednik.hardware import probe
    from sobesednik.training.train import resolve_precision, train

    quiet_libraries()
    settings = given.settings(under=read_config_file(config) if config else None)
    # Before the progress bar: which machine this is and what `--precision` means on it (serve logs the same).
    typer.echo(f"{probe().describe()}: training in {resolve_precision(settings.precision)}")
    result = train(settings)
    best = f", best valid loss {result.best_valid_loss:.4f}" if result.best_valid_loss is not None else ""
    typer.echo(f"process {result.process_index + 1}/{result.num_processes}: {result.steps} steps{best}")
    if result.process_index == 0:
        typer.echo(f"adapter written to {result.adapter_dir} ({result.train_samples} samples, "
                   f"{result.dropped_too_long} dropped as too long)")


@settings_command(app, "evaluate", EvaluateSettings)
def evaluate_command(given: Given[EvaluateSettings]) -> None:
    """Reply loss and perplexity, and style statistics of sampled replies against the real ones."""
    from sobesednik.training.evaluate import evaluate, format_report

    quiet_libraries()
    typer.echo(format_report(evaluate(given.settings())))


@settings_command(app, "export", ExportSettings)
def export_command(given: Given[ExportSettings]) -> None:
    """Merge a run's LoRA into its base: a plain HF model dir with chat template and generation config."""
    from sobesednik.training.export import export

    quiet_libraries()
    result = export(given.settings())
    typer.echo(f"merged model ({result.parameters:,} parameters) written to {result.model_dir}")


@settings_command(app, "serve", ApiSettings)
def serve_command(given: Given[ApiSettings]) -> None:
    """Serve the model over an OpenAI-compatible HTTP API (API key from SOBESEDNIK_API_KEY)."""
    from sobesednik.api.app import serve

    quiet_libraries()  # the service's log: its own startup lines, not the loader's progress bars
    serve(given.settings())


@settings_command(app, "chat", ChatSettings)
def chat_command(given: Given[ChatSettings]) -> None:
    """Chat with the model in the terminal (/reset forgets the dialogue, /exit leaves); API key from env."""
    from sobesednik.chat import chat

    chat(given.settings())


@settings_command(app, "bot", BotSettings)
def bot_command(given: Given[BotSettings]) -> None:
    """Run the Telegram bot; the token and other secrets come from SOBESEDNIK_BOT_* variables or .env."""
    from sobesednik.bot.main import bot

    bot(given.settings())


@settings_command(app, "demo", DemoSettings)
def demo_command(given: Given[DemoSettings]) -> None:
    """The whole way offline: prepare → tiny model → train → export → serve → a scripted chat → before/after."""
    from sobesednik.demo import demo

    demo(given.settings())
