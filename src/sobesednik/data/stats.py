"""What a `prepare` run read, kept and dropped: `stats.json`, the readable `stats.md`, `stats.png`.

    stats = Stats()
    stats.count_sample("train", reply_length=42, context_turns=2)
    write_stats(stats, Path("data"))

Counts are by reason (see `filters.MESSAGE_SKIP_REASONS` and `SAMPLE_DROP_REASONS`), so a user sees which
rule or flag cost how many samples. Author names appear only with `--show-names`: a dataset is shared more
often than the chat it came from.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sobesednik.data.filters import MESSAGE_SKIP_REASONS, SAMPLE_DROP_REASONS
from sobesednik.data.split import SPLITS

_LENGTH_BINS = (0, 10, 20, 40, 80, 160, 320, 640, 1280, 2560)  # characters; roughly log-spaced


@dataclass
class Stats:
    """Counters filled while preparing; `to_json` is what `stats.json` holds."""

    messages_read: int = 0
    messages_kept: int = 0
    chats: int = 0
    conversations: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # message-level reasons
    dropped: Counter[str] = field(default_factory=Counter)  # sample-level reasons
    quirks: Counter[str] = field(default_factory=Counter)  # odd but valid data, handled
    splits: Counter[str] = field(default_factory=Counter)
    reply_lengths: Counter[int] = field(default_factory=Counter)  # characters → samples
    context_turns: Counter[int] = field(default_factory=Counter)  # context turns → samples
    authors: dict[str, list[str]] = field(default_factory=dict)  # author id → display names
    target_authors: set[str] = field(default_factory=set)
    masked: Counter[str] = field(default_factory=Counter)  # --mask-pii: kind → replacements (per distinct line)

    def count_sample(self, split: str, *, reply_length: int, context_turns: int) -> None:
        self.splits[split] += 1
        self.reply_lengths[reply_length] += 1
        self.context_turns[context_turns] += 1

    @property
    def samples(self) -> int:
        return sum(self.splits.values())

    def to_json(self, *, show_names: bool) -> dict[str, Any]:
        authors: dict[str, Any] = {"count": len(self.authors), "with_samples": len(self.target_authors)}
        if show_names:
            authors["names"] = {author: sorted(names) for author, names in sorted(self.authors.items())}
        return {
            "messages_read": self.messages_read,
            "messages_kept": self.messages_kept,
            "chats": self.chats,
            "conversations": self.conversations,
            "samples": self.samples,
            "splits": {split: self.splits[split] for split in SPLITS},
            "skipped": dict(self.skipped.most_common()),
            "dropped": dict(self.dropped.most_common()),
            "quirks": dict(self.quirks.most_common()),
            "reply_length": _summary(self.reply_lengths),
            "reply_length_histogram": _histogram(self.reply_lengths),
            "context_turns": {str(depth): count for depth, count in sorted(self.context_turns.items())},
            "authors": authors,
            "masked": dict(self.masked.most_common()),
        }


def _percentile(counts: Counter[int], share: float) -> int:
    total = sum(counts.values())
    running = 0
    for value in sorted(counts):
        running += counts[value]
        if running >= share * total:
            return value
    return 0


def _summary(counts: Counter[int]) -> dict[str, float]:
    total = sum(counts.values())
    if not total:
        return {"mean": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
    mean = sum(value * count for value, count in counts.items()) / total
    return {"mean": round(mean, 1), "p50": _percentile(counts, 0.5), "p90": _percentile(counts, 0.9),
            "p99": _percentile(counts, 0.99), "max": max(counts)}


def _histogram(counts: Counter[int]) -> dict[str, int]:
    bins: dict[str, int] = {}
    for low, high in zip(_LENGTH_BINS, (*_LENGTH_BINS[1:], None), strict=True):
        label = f"{low}-{high - 1}" if high else f"{low}+"
        bins[label] = sum(count for value, count in counts.items() if value >= low and (high is None or value < high))
    return bins


def _table(counts: dict[str, int], explanations: dict[str, str]) -> list[str]:
    if not counts:
        return ["none", ""]
    lines = ["| reason | count | meaning |", "|---|---:|---|"]
    lines += [f"| `{reason}` | {count} | {explanations.get(reason, '')} |" for reason, count in counts.items()]
    return [*lines, ""]


def to_markdown(data: dict[str, Any]) -> str:
    """`stats.md`: the same numbers as `stats.json`, for people."""
    splits = data["splits"]
    lines = [
        "# Dataset statistics",
        "",
        f"- messages read: {data['messages_read']} in {data['chats']} chat(s), "
        f"{data['conversations']} conversation(s)",
        f"- messages kept as turns: {data['messages_kept']}",
        f"- samples: {data['samples']} (train {splits['train']}, valid {splits['valid']}, test {splits['test']})",
        f"- authors: {data['authors']['count']}, of them with samples: {data['authors']['with_samples']}",
        "",
        "## Messages skipped",
        "",
        *_table(data["skipped"], MESSAGE_SKIP_REASONS),
        "## Samples dropped",
        "",
        *_table(data["dropped"], SAMPLE_DROP_REASONS),
        "## Odd data handled",
        "",
        *_table(data["quirks"], {}),
        "## Masked personal data (--mask-pii; once per distinct message line)",
        "",
        *_table(data["masked"], {}),
        "## Reply length (characters)",
        "",
        "| mean | p50 | p90 | p99 | max |",
        "|---:|---:|---:|---:|---:|",
        "| {mean} | {p50} | {p90} | {p99} | {max} |".format(**data["reply_length"]),
        "",
        "| characters | samples |",
        "|---|---:|",
        *[f"| {label} | {count} |" for label, count in data["reply_length_histogram"].items()],
        "",
        "## Context depth (turns before the reply)",
        "",
        "| turns | samples |",
        "|---:|---:|",
        *[f"| {depth} | {count} |" for depth, count in data["context_turns"].items()],
        "",
        "![reply length and context depth](stats.png)",
        "",
    ]
    if "names" in data["authors"]:
        lines += ["## Authors", "", "| id | names |", "|---|---|"]
        lines += [f"| {author} | {', '.join(names)} |" for author, names in data["authors"]["names"].items()]
        lines.append("")
    return "\n".join(lines)


def _panel(draw: Any, box: tuple[int, int, int, int], title: str, xlabel: str, labels: list[str],
           heights: list[int]) -> None:
    """One bar chart in `box` (left, top, right, bottom): title, bars, the y maximum, first/last x labels."""
    left, top, right, bottom = box
    draw.text(((left + right) // 2, top), title, fill="black", anchor="mt")
    draw.text(((left + right) // 2, bottom), xlabel, fill="black", anchor="mb")
    plot_left, plot_top, plot_right, plot_bottom = left + 50, top + 20, right - 10, bottom - 34
    draw.line([(plot_left, plot_top), (plot_left, plot_bottom), (plot_right, plot_bottom)], fill="black")
    tallest = max(heights, default=0) or 1
    draw.text((plot_left - 4, plot_top), str(tallest), fill="black", anchor="rt")
    draw.text((plot_left - 4, plot_bottom), "0", fill="black", anchor="rb")
    width = (plot_right - plot_left) / max(len(heights), 1)
    inset = 1 if len(heights) > 12 else width / 8  # a histogram's bins touch, a few bars stand apart
    for index, (label, height) in enumerate(zip(labels, heights, strict=True)):
        x0 = plot_left + index * width
        y0 = min(plot_bottom - 1, plot_bottom - (plot_bottom - plot_top) * height / tallest)
        if height:
            draw.rectangle([x0 + inset, y0, max(x0 + inset, x0 + width - inset), plot_bottom - 1], fill="#1f77b4")
        if len(labels) <= 12 or index in (0, len(labels) - 1):
            draw.text((x0 + width / 2, plot_bottom + 4), label, fill="black", anchor="mt")


def _length_bins(counts: Counter[int], bins: int) -> tuple[list[str], list[int]]:
    """`bins` equal-width bins over the observed lengths: (each bin's lower edge, samples in it)."""
    if not counts:
        return [], []
    low, high = min(counts), max(counts)
    width = max(1.0, (high - low + 1) / bins)
    heights = [0] * min(bins, high - low + 1)
    for value, count in counts.items():
        heights[min(int((value - low) / width), len(heights) - 1)] += count
    return [str(round(low + index * width)) for index in range(len(heights))], heights


def plot(stats: Stats, path: Path) -> None:
    """Histograms of reply length and context depth as an 800x320 PNG.

    Drawn with Pillow rather than matplotlib: importing matplotlib.pyplot and laying out two axes cost 1.2 CPU
    seconds, a seventh of `prepare` on 200,000 messages (docs/benchmarks.md), for a picture of two bar charts;
    Pillow draws it in about 0.05 s.
    """
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (800, 320), "white")
    draw = ImageDraw.Draw(image)
    labels, heights = _length_bins(stats.reply_lengths, 40)
    _panel(draw, (0, 8, 400, 312), "Reply length (samples)", "characters", labels, heights)
    depths = sorted(stats.context_turns)
    _panel(draw, (400, 8, 800, 312), "Context depth (samples)", "turns before the reply",
           [str(depth) for depth in depths], [stats.context_turns[depth] for depth in depths])
    image.save(path, optimize=False)


def write_stats(stats: Stats, out: Path, *, show_names: bool) -> dict[str, Any]:
    """Write `stats.json`, `stats.md` and `stats.png` into `out`; return the JSON data."""
    data = stats.to_json(show_names=show_names)
    (out / "stats.json").write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "stats.md").write_text(to_markdown(data), encoding="utf-8")
    plot(stats, out / "stats.png")
    return data
