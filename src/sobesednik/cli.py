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
            f"{_given(settings_class, problem)}"
            for problem in error.errors(include_url=False)
        )
        raise ConfigError(f"invalid {settings_class.__name__}: {problems}") from None


def _given(settings_class: type[BaseSettings], problem: Any) -> str:
    """The bad value of a field, for the error line; never a secret's, and not the whole input of a cross-field
    check (its message names the fields, and the input holds every value, the API key and tokens too)."""
    if not problem["loc"]:
        return ""
    field = settings_class.model_fields.get(str(problem["loc"][0]))
    if field is not None and "SecretStr" in str(field.annotation):
        return " (given: a secret, not shown)"
    return f" (given: {problem.get('input')!r})"


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
    per_speaker: bool | None = typer.Option(None, "--per-speaker", help="One dataset per author with enough replies."),
    min_speaker_replies: int | None = typer.Option(None, help="Train replies an author needs with --per-speaker."),
) -> None:
    """Turn Telegram exports into train/valid/test.jsonl dialogues with stats (docs/data.md)."""
    flags = dict(locals())
    flags["chat"], flags["speaker"] = chat or None, speaker or None
    from sobesednik.data.per_speaker import PERSONAS_FILE, prepare_per_speaker
    from sobesednik.data.prepare import prepare
    from sobesednik.data.settings import PrepareSettings

    settings = build_settings(PrepareSettings, **flags)
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

@app.command("bot")
def bot_command(
    service_url: str | None = typer.Option(None, help="Base URL of the OpenAI-compatible service."),
    storage: str | None = typer.Option(None, help="History store: sqlite:///path or redis://host:port/db."),
    telegram_api: str | None = typer.Option(None, help="Bot API server base URL (self-hosted or Telegram's)."),
    group_reply_probability: float | None = typer.Option(None, help="Chance to answer unaddressed group messages."),
    context_turns: int | None = typer.Option(None, help="Turns of history sent to the model."),
    context_chars: int | None = typer.Option(None, help="Characters of history sent to the model."),
    max_tokens: int | None = typer.Option(None, help="Reply length in tokens (default: the service's)."),
    persona: str | None = typer.Option(None, help="Persona (model id) of chats that chose none with /persona."),
    service_timeout: float | None = typer.Option(None, help="Seconds for one request to the service."),
    service_deadline: float | None = typer.Option(None, help="Seconds for all retries of one reply."),
    history_max_messages: int | None = typer.Option(None, help="Messages kept per chat."),
    rate_limit_messages: int | None = typer.Option(None, help="Replies per user per window."),
    rate_limit_seconds: float | None = typer.Option(None, help="The rate-limit window, seconds."),
    max_inflight_per_chat: int | None = typer.Option(None, help="Replies generated at once in one chat."),
    allowed_ids: str | None = typer.Option(None, help="Comma-separated user or chat ids; empty: everyone."),
    flood_retries: int | None = typer.Option(None, help="Retries of a Bot API call after a 429."),
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


@app.command("tiny-model")
def tiny_model_command(
    data: Annotated[Path | None, typer.Option(help="Prepared dataset dir (its text trains the tokenizer).")] = None,
    out: Annotated[Path | None, typer.Option(help="Model dir to write.")] = None,
    pretrain_steps: int | None = typer.Option(None, help="Plain-LM steps on the text before saving (0 = none)."),
    vocab_size: int | None = typer.Option(None, help="BPE vocabulary size."),
    seed: int | None = typer.Option(None, help="Random seed."),
) -> None:
    """Build a tiny offline base model (tokenizer + small GPT-2) from a prepared dataset's text."""
    flags = dict(locals())
    from sobesednik.modeling.pretrain import build_tiny_base
    from sobesednik.training.settings import TinyModelSettings

    result = build_tiny_base(build_settings(TinyModelSettings, **flags))
    loss = f", final LM loss {result.final_loss:.3f}" if result.final_loss is not None else ""
    typer.echo(f"tiny model written to {result.model_dir} ({result.pretrain_steps} pretraining steps{loss})")


@app.command("train")
def train_command(
    data: Annotated[Path | None, typer.Option(help="Prepared dataset dir with train.jsonl and valid.jsonl.")] = None,
    base: str | None = typer.Option(None, help="Base model: Hub id or local model dir."),
    out: Annotated[Path | None, typer.Option(help="Run dir for the adapter, checkpoints, metrics and samples.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML settings file (a run's config.yaml); flags win.")] = None,
    max_length: int | None = typer.Option(None, help="Tokens per sample; oldest context turns are dropped to fit."),
    epochs: float | None = typer.Option(None, help="Training epochs."),
    max_steps: int | None = typer.Option(None, help="Optimizer steps; > 0 overrides --epochs."),
    min_steps: int | None = typer.Option(None, help="Optimizer steps at least, unless --epochs/--max-steps is given."),
    batch_size: int | None = typer.Option(None, help="Samples (or packed rows) per step and process."),
    gradient_accumulation_steps: int | None = typer.Option(None, help="Batches per optimizer step."),
    learning_rate: float | None = typer.Option(None, help="Peak learning rate (cosine schedule)."),
    warmup_ratio: float | None = typer.Option(None, help="Share of steps spent warming up."),
    weight_decay: float | None = typer.Option(None, help="AdamW weight decay."),
    lora_r: int | None = typer.Option(None, help="LoRA rank."),
    lora_alpha: int | None = typer.Option(None, help="LoRA alpha (scale = alpha / r)."),
    lora_dropout: float | None = typer.Option(None, help="Dropout on the LoRA input."),
    lora_target_modules: Annotated[list[str] | None, typer.Option(help="Module to adapt; repeat for several.")] = None,
    packing: bool | None = typer.Option(None, "--packing/--no-packing", help="Pack samples (else group by length)."),
    gradient_checkpointing: bool | None = typer.Option(
        None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations to save memory."),
    precision: str | None = typer.Option(None, help="auto, fp32, bf16 or fp16 (CUDA only)."),
    eval_steps: int | None = typer.Option(None, help="Evaluate every N steps (0 = 10 times per run)."),
    patience: int | None = typer.Option(None, help="Evaluations without improvement before stopping (0 = never)."),
    save_total_limit: int | None = typer.Option(None, help="Checkpoints kept."),
    logging_steps: int | None = typer.Option(None, help="Log the train loss every N steps."),
    samples: int | None = typer.Option(None, help="Valid contexts answered before/after training in samples.md."),
    resume: bool | None = typer.Option(None, "--resume/--no-resume", help="Continue from the last checkpoint."),
    load_in_4bit: bool | None = typer.Option(None, "--load-in-4bit/--no-load-in-4bit", help="QLoRA; CUDA only."),
    seed: int | None = typer.Option(None, help="Random seed."),
    fidelity_samples: int | None = typer.Option(
        None, help="Valid contexts answered to measure persona fidelity before, during and after training (0 = off)."),
) -> None:
    """LoRA-fine-tune a base model on a prepared dataset (accelerate launch / torchrun for several processes)."""
    flags = dict(locals())
    flags["lora_target_modules"] = lora_target_modules or None
    from sobesednik.training.settings import TrainSettings, with_config_file
    from sobesednik.training.train import train

    result = train(build_settings(TrainSettings, **with_config_file(flags.pop("config"), flags)))
    best = f", best valid loss {result.best_valid_loss:.4f}" if result.best_valid_loss is not None else ""
    typer.echo(f"process {result.process_index + 1}/{result.num_processes}: {result.steps} steps{best}")
    if result.process_index == 0:
        typer.echo(f"adapter written to {result.adapter_dir} ({result.train_samples} samples, "
                   f"{result.dropped_too_long} dropped as too long)")


@app.command("evaluate")
def evaluate_command(
    model: str | None = typer.Option(None, help="RUN_DIR (base + adapter), MODEL_DIR or Hub id."),
    data: Annotated[Path | None, typer.Option(help="JSONL file of dialogues (e.g. data/test.jsonl).")] = None,
    base: str | None = typer.Option(None, help="Base for --compare-base when --model is a MODEL_DIR."),
    compare_base: bool | None = typer.Option(None, "--compare-base/--no-compare-base", help="Show the base beside."),
    max_length: int | None = typer.Option(None, help="Tokens per sample, as in training."),
    batch_size: int | None = typer.Option(None, help="Samples per forward pass."),
    samples: int | None = typer.Option(None, help="Contexts to sample replies for (style statistics, fidelity)."),
    max_new_tokens: int | None = typer.Option(None, help="Reply length limit in tokens."),
    out: Annotated[Path | None, typer.Option(help="Also write the report as JSON here.")] = None,
    seed: int | None = typer.Option(None, help="Sampling seed."),
) -> None:
    """Reply loss and perplexity, and style statistics of sampled replies against the real ones."""
    flags = dict(locals())
    from sobesednik.training.evaluate import evaluate, format_report
    from sobesednik.training.settings import EvaluateSettings

    typer.echo(format_report(evaluate(build_settings(EvaluateSettings, **flags))))


@app.command("export")
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="The --out dir of `sobesednik train`.")],
    out: Annotated[Path | None, typer.Option(help="Model dir to write.")] = None,
    dtype: str | None = typer.Option(None, help="float32, bfloat16 or float16."),
) -> None:
    """Merge a run's LoRA into its base: a plain HF model dir with chat template and generation config."""
    flags = dict(locals())
    from sobesednik.training.export import export
    from sobesednik.training.settings import ExportSettings

    result = export(build_settings(ExportSettings, **flags))
    typer.echo(f"merged model ({result.parameters:,} parameters) written to {result.model_dir}")


@app.command("serve")
def serve_command(
    model: str | None = typer.Option(None, help="MODEL_DIR or RUN_DIR; with --adapter, their base model."),
    adapter: Annotated[list[str] | None, typer.Option(
        help="A persona as NAME=DIR (RUN_DIR or adapter dir trained on --model); repeat.")] = None,
    host: str | None = typer.Option(None, help="Interface to listen on (0.0.0.0 exposes the service)."),
    port: int | None = typer.Option(None, help="Port to listen on."),
    model_name: str | None = typer.Option(None, help="Model id shown to clients (default: the directory name)."),
    dtype: str | None = typer.Option(None, help="auto (bfloat16 where native, else float32), float32, bfloat16."),
    quantize: str | None = typer.Option(None, help="auto (int8 on CPUs without native bf16), none or int8."),
    threads: int | None = typer.Option(None, help="Torch threads (default: all cores)."),
    max_batch_size: int | None = typer.Option(None, help="Rows decoded together."),
    max_wait_ms: float | None = typer.Option(None, help="How long a request waits for others to join its batch."),
    join_fraction: float | None = typer.Option(
        None, help="Requests join a running batch below this share of --max-batch-size (1: always, 0: never)."),
    max_queue: int | None = typer.Option(None, help="Waiting rows beyond which requests get 429."),
    request_timeout_s: float | None = typer.Option(None, help="Seconds before an unanswered request gets 504."),
) -> None:
    """Serve the model over an OpenAI-compatible HTTP API (API key from SOBESEDNIK_API_KEY)."""
    flags = dict(locals())
    flags["adapters"] = flags.pop("adapter")
    from sobesednik.api.app import serve
    from sobesednik.api.settings import ApiSettings

    serve(build_settings(ApiSettings, **flags))


@app.command("chat")
def chat_command(
    url: str | None = typer.Option(None, help="Service URL (default: the local `sobesednik serve`)."),
    model: str | None = typer.Option(None, help="MODEL_DIR or RUN_DIR to load in-process instead of a service."),
    max_tokens: int | None = typer.Option(None, help="Reply length in tokens (default: the model's)."),
    temperature: float | None = typer.Option(None, help="Sampling temperature; 0 is greedy (default: the model's)."),
    timeout_s: float | None = typer.Option(None, help="Seconds to wait for a reply from the service."),
) -> None:
    """Chat with the model in the terminal (/reset forgets the dialogue, /exit leaves); API key from env."""
    flags = dict(locals())
    from sobesednik.chat import ChatSettings, chat

    chat(build_settings(ChatSettings, **flags))


@app.command("demo")
def demo_command(
    export: Annotated[Path | None, typer.Option(help="Telegram export to learn from (default: the sample).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for everything the demo writes.")] = None,
    pretrain_steps: int | None = typer.Option(None, help="Plain-LM steps of the tiny base model."),
    speaker: str | None = typer.Option(None, help="The persona: whose replies LoRA learns (id or name)."),
    train_steps: int | None = typer.Option(None, help="LoRA optimizer steps (default: train's recipe)."),
    bot: bool | None = typer.Option(None, "--bot/--no-bot", help="Then run the Telegram bot on the demo model."),
    record: Annotated[Path | None, typer.Option(help="Also save the terminal output as an SVG here.")] = None,
) -> None:
    """The whole way offline: prepare → tiny model → train → export → serve → a scripted chat → before/after."""
    flags = dict(locals())
    from sobesednik.demo import DemoSettings, demo

    demo(build_settings(DemoSettings, **flags))
