"""`sobesednik demo`: the whole way, offline, on the shipped sample export and a tiny model built here.

prepare (the whole chat, and one speaker's replies) → tiny-model (a base that knows the chat, not the person)
→ train (LoRA, the recipe's defaults) → export → serve (a child process) → a scripted chat through the same
client the bot uses → the base's and the tuned model's replies to the same contexts side by side, with the
run's fidelity figures → the service stops. A few minutes on 2 CPU cores; every artefact stays under `--out`
(default `demo/`), so the demo can be rerun or inspected afterwards.

    sobesednik demo                 # or: make demo
    SOBESEDNIK_BOT_TOKEN=… sobesednik demo --bot   # then talk to the demo model in Telegram
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.table import Table

# A dialogue a user might have with a model trained on the sample dacha chat.
SCRIPTED_TURNS = (
    "Привет! Как дела?",
    "Что делаем в выходные?",
    "Может, на дачу поедем?",
    "А шашлык кто возьмёт?",
)
SIDE_BY_SIDE = 5  # contexts shown with the base's and the tuned model's replies


class DemoSettings(BaseSettings):
    """Settings of the demo run; validated at construction."""

    model_config = SettingsConfigDict(env_prefix="SOBESEDNIK_DEMO_", env_file=".env", extra="ignore")

    export: Path = Field(Path("examples/chat_export/result.json"),
                         description="the shipped sample; any result.json works")
    speaker: str = Field("Дима Соколов", description=(
        "the persona: the sample's lowercase \"короче … )))\" writer, the style furthest from the others'"))
    out: Path = Field(Path("demo"), description="everything the demo writes: data/, models/, runs/")
    pretrain_steps: int = Field(300, ge=0, description="plain-LM steps of the tiny base on the whole chat's dialogues")
    train_steps: int | None = Field(None, ge=1, description="LoRA optimizer steps; None: train's own recipe decides")
    bot: bool = Field(False, description=(
        "after the scripted chat, run the Telegram bot on the demo model (needs SOBESEDNIK_BOT_TOKEN)"))
    record: Path | None = Field(None, description=(
        "also save the terminal output as an SVG picture here (README's docs/demo.svg)"))


@dataclass(frozen=True)
class DemoPaths:
    chat: Path  # the whole chat's dialogues: the tiny base learns the chat from them
    data: Path  # the speaker's replies: LoRA learns the person from them
    base: Path
    run: Path
    model: Path

    @classmethod
    def under(cls, out: Path) -> DemoPaths:
        return cls(chat=out / "data-chat", data=out / "data", base=out / "models" / "tiny", run=out / "runs" / "demo",
                   model=out / "models" / "demo")


@contextmanager
def _stage(console: Console, title: str) -> Iterator[None]:
    console.rule(title)
    with console.status(title.split(":", 1)[-1].strip() + " …"):
        yield


def demo(settings: DemoSettings, console: Console | None = None) -> DemoPaths:
    """Run every stage on the sample and print the chat; returns where the artefacts are."""
    from sobesednik.data.prepare import prepare
    from sobesednik.data.settings import PrepareSettings
    from sobesednik.quiet import quiet_libraries
    from sobesednik.supervisor import run_service
    from sobesednik.training.export import export
    from sobesednik.training.pretrain import build_tiny_base
    from sobesednik.training.settings import ExportSettings, TinyModelSettings, TrainSettings
    from sobesednik.training.train import train

    console = console or Console(record=settings.record is not None)
    quiet_libraries()
    paths = DemoPaths.under(settings.out)
    # A rerun starts clean: training refuses to overwrite a run dir, and stale files would mislead.
    shutil.rmtree(settings.out, ignore_errors=True)

    with _stage(console, "1/6 prepare: Telegram export → dialogue samples"):
        # The sample holds a phone and a card number on purpose: a chat model must not learn to repeat them.
        chat = prepare(PrepareSettings(exports=[settings.export], out=paths.chat, mask_pii=True, progress=False))
        mine = prepare(PrepareSettings(exports=[settings.export], out=paths.data, mask_pii=True, progress=False,
                                       speaker=[settings.speaker]))
    console.print(f"whole chat: {chat.stats['samples']} samples in {paths.chat}/; {settings.speaker}'s replies: "
                  f"{mine.stats['samples']} samples in {paths.data}/ (stats.md)")

    with _stage(console, "2/6 tiny-model: an offline stand-in for ruDialoGPT-medium, built on the whole chat"):
        base = build_tiny_base(TinyModelSettings(data=paths.chat, out=paths.base,
                                                 pretrain_steps=settings.pretrain_steps))
    console.print(f"base model: {base.model_dir}/ ({base.pretrain_steps} pretraining steps on every speaker)")

    with _stage(console, f"3/6 train: LoRA on {settings.speaker}'s replies"):
        result = train(TrainSettings(data=paths.data, base=str(paths.base), out=paths.run, progress=False,
                                     **({"max_steps": settings.train_steps} if settings.train_steps else {})))
    console.print(f"adapter: {result.adapter_dir}/ ({result.steps} steps, best valid loss "
                  f"{result.best_valid_loss:.3f})")

    with _stage(console, "4/6 export: merge LoRA into the base"):
        export(ExportSettings(run_dir=paths.run, out=paths.model))
    console.print(f"plain Hugging Face model dir: {paths.model}/")

    console.rule("5/6 serve + chat: the model answers over the OpenAI-compatible API")
    with run_service(paths.model, log_path=settings.out / "serve.log") as service:
        console.print(f"service at {service.url} (log: {service.log_path})")
        asyncio.run(_scripted_chat(service.url, console))
        if settings.bot:
            _run_bot(service.url, console)

    console.rule(f"6/6 before and after: the base and the tuned model answer the same {settings.speaker} contexts")
    _side_by_side(paths, settings.speaker, console)

    console.rule("report")
    for what, path in (("dataset statistics", paths.data / "stats.md"), ("loss curve", paths.run / "loss.png"),
                       ("replies before/after training", paths.run / "samples.md"),
                       ("metrics", paths.run / "metrics.jsonl"), ("exported model", paths.model)):
        console.print(f"{what:32} {path}")
    if settings.record is not None:
        console.save_svg(str(settings.record), title="sobesednik demo")
    return paths


def _side_by_side(paths: DemoPaths, speaker: str, console: Console) -> None:
    """Replies of the base and the tuned model to the same contexts, and the run's fidelity before and after."""
    samples_file, fidelity_file = paths.run / "samples.jsonl", paths.run / "fidelity.json"
    if not samples_file.is_file() or not fidelity_file.is_file():  # `train` skips them with samples or fidelity off
        console.print(f"no {samples_file.name} or {fidelity_file.name} in {paths.run}: SOBESEDNIK_TRAIN_SAMPLES or "
                      "SOBESEDNIK_TRAIN_FIDELITY_SAMPLES is 0 in this environment")
        return
    # Written by `train`: the same contexts and decoder as its fidelity figures.
    rows = [json.loads(line) for line in samples_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    table = Table(show_lines=True, expand=True)
    for column in ("context (last turn)", "real reply", "base", "tuned"):
        table.add_column(column, ratio=1, overflow="fold")
    for row in rows[:SIDE_BY_SIDE]:
        last = row["context"][-1]["content"] if row["context"] else ""
        table.add_row(last, row["real"], row["before"], row["after"])
    console.print(table)
    report = json.loads(fidelity_file.read_text(encoding="utf-8"))
    figures = Table(title=f"how much the replies are {speaker}'s")
    figures.add_column("")
    figures.add_column("base", justify="right")
    figures.add_column("tuned", justify="right")
    for name in ("fidelity", "stop_rate"):
        figures.add_row(name, *(_figure(report[when].get(name)) for when in ("before", "after")))
    console.print(figures)
    after = report["after"]
    if isinstance(after.get("real_target_share"), float):  # the scale: what the real replies and a guess score
        console.print(f"{speaker}'s own held-out replies score {_figure(after['real_target_share'])}, "
                      f"a random guess among {after['speakers']} speakers {_figure(after['chance'])}")
    if report.get("definition"):
        console.print(report["definition"], style="dim")


def _figure(value: object) -> str:
    if value is None:
        return "n/a"  # fidelity.json says why it could not be computed
    return f"{value:.0%}" if isinstance(value, float) and 0 <= value <= 1 else str(value)


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
