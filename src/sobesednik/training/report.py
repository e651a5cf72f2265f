"""The human-readable parts of a run: `loss.png` (train/valid loss and fidelity curves), `samples.md` and
its machine-readable twin `samples.jsonl`.

    plot_losses(Path("runs/me/metrics.jsonl"), Path("runs/me/loss.png"))
    write_samples(Path("runs/me"), dialogues, before, after)
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
    handles, labels = axes.get_legend_handles_labels()
    fidelity = [(record["step"], record["fidelity"]) for record in records
                if "fidelity" in record and record["fidelity"] is not None]
    if fidelity:  # on its own 0..1 axis: a share, not a loss
        share = axes.twinx()
        steps, values = zip(*fidelity, strict=True)
        share.plot(steps, values, color="tab:green", marker="s", linestyle="--", label="fidelity")
        share.set_ylim(0, 1)
        share.set_ylabel("fidelity (share attributed to the target)")
        more_handles, more_labels = share.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axes.legend(handles, labels)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def _quote(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "∅"


def write_samples(run_dir: Path, dialogues: Sequence[Sequence[Message]], before: Sequence[str],
                  after: Sequence[str]) -> None:
    """`samples.md`, a table of the last context turn, the real reply and the replies before and after training,
    and `samples.jsonl`, one `{"context", "real", "before", "after"}` object per context with the whole context."""
    lines = ["# Replies to validation contexts", "",
             "| context (last turn) | real reply | before training | after training |", "|---|---|---|---|"]
    records = []
    for dialogue, old, new in zip(dialogues, before, after, strict=True):
        context = dialogue[-2]["content"] if len(dialogue) > 1 else ""
        lines.append(f"| {_quote(context)} | {_quote(dialogue[-1]['content'])} | {_quote(old)} | {_quote(new)} |")
        records.append({"context": list(dialogue[:-1]), "real": dialogue[-1]["content"], "before": old, "after": new})
    (run_dir / "samples.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (run_dir / "samples.jsonl").write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records),
                                           encoding="utf-8")
