"""`sobesednik demo`: the whole way, offline, on the shipped sample export and a tiny model built here.

prepare → tiny-model → train (LoRA) → export → serve (a child process) → a scripted chat through the same
client the bot uses → where the run's report lies → the service stops. A few minutes on 2 CPU cores; every
artefact stays under `--out` (default `demo/`), so the demo can be rerun or inspected afterwards.

    sobesednik demo                 # or: make demo
    SOBESEDNIK_BOT_TOKEN=… sobesednik demo --bot   # then talk to the demo model in Telegram
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console

# A dialogue a user might have with a model trained on the sample dacha chat.
SCRIPTED_TURNS = (
    "Привет! Как дела?",
    "Что делаем в выходные?",
    "Может, на дачу поедем?",
    "А шашлык кто возьмёт?",
)


class DemoSettings(BaseSettings):
    """Settings of the demo run; validated at construction."""

    model_config = SettingsConfigDict(env_prefix="SOBESEDNIK_DEMO_", env_file=".env", extra="ignore")

    export: Path = Path("examples/chat_export/result.json")  # the shipped sample; any result.json works
    out: Path = Path("demo")  # everything the demo writes: data/, models/, runs/
    pretrain_steps: int = Field(300, ge=0)  # plain-LM steps of the tiny base, so LoRA has something to adapt
    train_steps: int = Field(120, ge=1)  # LoRA optimizer steps: enough for the valid loss to drop visibly
    bot: bool = False  # after the scripted chat, run the Telegram bot on the demo model (needs SOBESEDNIK_BOT_TOKEN)


@dataclass(frozen=True)
class DemoPaths:
    data: Path
    base: Path
    run: Path
    model: Path

    @classmethod
    def under(cls, out: Path) -> DemoPaths:
        return cls(data=out / "data", base=out / "models" / "tiny", run=out / "runs" / "demo",
                   model=out / "models" / "demo")


def demo(settings: DemoSettings, console: Console | None = None) -> DemoPaths:
    """Run every stage on the sample and print the chat; returns where the artefacts are."""
    from sobesednik.api.launcher import run_service
    from sobesednik.data.prepare import prepare
    from sobesednik.data.settings import PrepareSettings
    from sobesednik.modeling.pretrain import build_tiny_base
    from sobesednik.training.export import export
    from sobesednik.training.settings import ExportSettings, TinyModelSettings, TrainSettings
    from sobesednik.training.train import train

    console = console or Console()
    paths = DemoPaths.under(settings.out)
    # A rerun starts clean: training refuses to overwrite a run dir, and stale files would mislead.
    shutil.rmtree(settings.out, ignore_errors=True)

    console.rule("1/5 prepare: Telegram export → dialogue samples")
    # The sample holds a phone and a card number on purpose: a chat model must not learn to repeat them.
    prepare(PrepareSettings(exports=[settings.export], out=paths.data, mask_pii=True, progress=False))
    console.print(f"dataset and statistics: {paths.data}/ (stats.md)")

    console.rule("2/5 tiny-model: an offline stand-in for ruDialoGPT-medium")
    build_tiny_base(TinyModelSettings(data=paths.data, out=paths.base, pretrain_steps=settings.pretrain_steps))

    console.rule("3/5 train: LoRA on the dialogues")
    result = train(TrainSettings(data=paths.data, base=str(paths.base), out=paths.run, max_steps=settings.train_steps,
                                 eval_steps=max(1, settings.train_steps // 4), samples=5))
    console.print(f"adapter: {result.adapter_dir}; best valid loss {result.best_valid_loss}")

    console.rule("4/5 export: merge LoRA into the base")
    export(ExportSettings(run_dir=paths.run, out=paths.model))
    console.print(f"plain Hugging Face model dir: {paths.model}/")

    console.rule("5/5 serve + chat: the model answers over the OpenAI-compatible API")
    with run_service(paths.model, log_path=settings.out / "serve.log") as service:
        console.print(f"service at {service.url} (log: {service.log_path})")
        asyncio.run(_scripted_chat(service.url, console))
        if settings.bot:
            _run_bot(service.url, console)

    console.rule("report")
    for what, path in (("dataset statistics", paths.data / "stats.md"), ("loss curve", paths.run / "loss.png"),
                       ("replies before/after training", paths.run / "samples.md"),
                       ("metrics", paths.run / "metrics.jsonl"), ("exported model", paths.model)):
        console.print(f"{what:32} {path}")
    return paths


async def _scripted_chat(url: str, console: Console) -> None:
    from sobesednik.bot.client import ServiceClient

    history: list[dict[str, str]] = []
    async with ServiceClient(url) as client:
        for turn in SCRIPTED_TURNS:
            history.append({"role": "user", "content": turn})
            reply = await client.chat(history)
            history.append({"role": "assistant", "content": reply})
            console.print(f"[bold cyan]вы:[/]         {turn}")
            console.print(f"[bold green]собеседник:[/] {reply}")


def _run_bot(url: str, console: Console) -> None:
    from sobesednik.bot.main import bot
    from sobesednik.bot.settings import BotSettings

    console.print("the bot is running on the demo model; Ctrl-C stops it")
    bot(BotSettings(service_url=url))
