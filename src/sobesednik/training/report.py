"""The human-readable parts of a run: `loss.png` (train and valid curves) and `samples.md`.

    plot_losses(Path("runs/me/metrics.jsonl"), Path("runs/me/loss.png"))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from sobesednik.dialogue import Message


def read_metrics(path: Path) -> list[dict]:
    """The records of a run's metrics.jsonl (empty when training logged nothing)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_losses(metrics_path: Path, out: Path) -> None:
    """Train loss and valid loss against optimizer steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    figure, axes = plt.subplots(figsize=(7, 4))
    for key, label in (("loss", "train"), ("eval_loss", "valid")):
        points = [(record["step"], record[key]) for record in records if key in record]
        if points:
            steps, values = zip(*points, strict=True)
            axes.plot(steps, values, marker="o" if key == "eval_loss" else None, label=label)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss per reply token")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def _quote(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "∅"


def write_samples(out: Path, dialogues: Sequence[Sequence[Message]], before: Sequence[str],
                  after: Sequence[str]) -> None:
    """A Markdown table: the last context turn, the real reply, the reply before and after training."""
    lines = ["# Replies to validation contexts", "",
             "| context (last turn) | real reply | before training | after training |", "|---|---|---|---|"]
    for dialogue, old, new in zip(dialogues, before, after, strict=True):
        context = dialogue[-2]["content"] if len(dialogue) > 1 else ""
        lines.append(f"| {_quote(context)} | {_quote(dialogue[-1]['content'])} | {_quote(old)} | {_quote(new)} |")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
