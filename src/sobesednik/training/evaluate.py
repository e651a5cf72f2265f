"""The `evaluate` stage: how well a model predicts the real replies, and how much its own replies are the target's.

    sobesednik evaluate --model runs/me --data data/test.jsonl --compare-base --out eval.json

Reports the loss and perplexity per reply token (context tokens never count, as in training), and for replies
sampled by the service's `Generator` with the model's generation settings: length, distinct-1/2 and style
rates beside the same figures of the real replies, and the persona-fidelity block (docs/fidelity.md: the share
attributed to the target by an authorship model fitted on the dataset dir's `speakers.jsonl`, style distances,
stop rate). `--compare-base` adds the base model's column (a RUN_DIR's base is its adapter switched off).
Figures the data cannot support are left out with one line saying why (`report["notes"]`).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from sobesednik.dialogue import read_jsonl
from sobesednik.errors import ConfigError
from sobesednik.modeling.load import is_run_dir, load_base, load_model
from sobesednik.training.dataset import ConversationDataset
from sobesednik.training.fidelity import (
    FEATURE_NAMES,
    FIDELITY_DEFINITION,
    FidelityReference,
    measure_fidelity,
    reference_or_reason,
    target_share,
)
from sobesednik.training.metrics import reply_loss, sample_replies, style_stats
from sobesednik.training.settings import EvaluateSettings, evaluation_max_length


def _measure(model: Any, tokenizer: Any, dataset: ConversationDataset, dialogues: list,
             reference: FidelityReference | str, settings: EvaluateSettings) -> dict[str, Any]:
    from sobesednik.inference.generator import Generator

    figures: dict[str, Any] = reply_loss(model, dataset, tokenizer.pad_token_id, settings.batch_size)
    completions = sample_replies(Generator(model, tokenizer), [dialogue[:-1] for dialogue in dialogues],
                                 seed=settings.seed, max_new_tokens=settings.max_new_tokens,
                                 batch_size=settings.batch_size)
    replies = [completion.text for completion in completions]
    figures["style"] = style_stats(replies)
    figures["fidelity"] = measure_fidelity(reference, replies, [c.finish_reason for c in completions],
                                           [dialogue[-1]["content"] for dialogue in dialogues])
    figures["examples"] = replies[:5]
    return figures


def evaluate(settings: EvaluateSettings) -> dict[str, Any]:
    """The report as a JSON-ready dict; also written to `settings.out` when given."""
    from pathlib import Path

    import torch

    dialogues = read_jsonl(settings.data)
    run = is_run_dir(Path(settings.model))
    if settings.compare_base and not run and settings.base is None:
        raise ConfigError(f"--compare-base: {settings.model} is not a RUN_DIR, so pass its base with --base")
    model, tokenizer = load_model(settings.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    max_length = evaluation_max_length(settings)
    dataset = ConversationDataset(dialogues, tokenizer, max_length)
    sampled = dialogues[: settings.samples]
    reference = reference_or_reason(settings.data.parent)
    report: dict[str, Any] = {
        "model": settings.model,
        "data": str(settings.data),
        "dialogues": len(dialogues),
        "max_length": max_length,
        "dropped_too_long": dataset.dropped_too_long,
        "real": {"style": style_stats([dialogue[-1]["content"] for dialogue in sampled])},
        # The real replies' own share attributed to the target: what a perfect imitation would reach here.
        "real_target_share": None if isinstance(reference, str)
        else target_share(reference, [dialogue[-1]["content"] for dialogue in sampled]),
        "fidelity_definition": FIDELITY_DEFINITION,
        "notes": [] if not isinstance(reference, str) else
        [f"fidelity, target share and style distances cannot be computed: {reference}"],
        "model_figures": _measure(model, tokenizer, dataset, sampled, reference, settings),
    }
    if settings.compare_base:
        if run:
            with model.disable_adapter():
                report["base_figures"] = _measure(model, tokenizer, dataset, sampled, reference, settings)
        else:
            base, base_tokenizer, _ = load_base(settings.base)
            base_set = ConversationDataset(dialogues, base_tokenizer, max_length)
            report["base_figures"] = _measure(base.to(device).eval(), base_tokenizer, base_set, sampled, reference,
                                              settings)
    if settings.out:
        settings.out.parent.mkdir(parents=True, exist_ok=True)
        settings.out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table: one row per figure, one column per model (and the real replies)."""
    columns = [("fine-tuned" if "base_figures" in report else "model", report["model_figures"])]
    if "base_figures" in report:
        columns.append(("base", report["base_figures"]))
    columns.append(("real", report["real"]))
    rows = [("loss", "loss"), ("perplexity", "perplexity")]
    rows += [(name, f"style.{name}") for name in report["real"]["style"]]
    rows += [(name, f"fidelity.{name}") for name in ("fidelity", "target_probability", "stop_rate")]
    rows += [(f"Δ {name}", f"fidelity.style_distance.{name}.distance") for name in FEATURE_NAMES]
    lines = [f"{report['model']} on {report['data']} ({report['dialogues']} dialogues, "
             f"{report['dropped_too_long']} too long)", ""]
    lines.append(f"{'':28}" + "".join(f"{title:>14}" for title, _ in columns))
    for title, key in rows:
        cells = []
        for _, figures in columns:
            value: Any = figures
            with contextlib.suppress(KeyError):
                for part in key.split("."):
                    value = value[part]
            cells.append(f"{value:>14.3f}" if isinstance(value, float | int) else f"{'—':>14}")
        lines.append(f"{title:28}" + "".join(cells))
    fidelity = report["model_figures"]["fidelity"]
    if report["real_target_share"] is not None:
        lines += ["", f"fidelity: share of sampled replies attributed to the target {fidelity['target']} among "
                  f"{fidelity['speakers']} speakers (chance {fidelity['chance']:.3f}, the real replies "
                  f"{report['real_target_share']:.3f}); Δ: distance to the real replies; see docs/fidelity.md"]
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)
