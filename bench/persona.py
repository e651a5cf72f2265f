"""Does `train` with no flags make the model talk like the person? Base vs tuned, judged by an outside classifier.

    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/persona.py                    # ~1.5k and ~10k messages
    .venv/bin/python bench/persona.py --messages 1500 --variant learning_rate=1e-3,lora_r=16

For each chat size: `examples/chat_export/make_sample.py --seed 7` writes a held-out chat (the same four styles
as the shipped sample, other conversations); `prepare` without `--speaker` → `tiny-model` (the base knows the
whole chat, not the person); `prepare --speaker X` → `train` with its defaults and with each `--variant`
(TrainSettings fields set otherwise; by default the recipe before bench/persona.py, as the baseline) on the
same base and data.
Then replies to the speaker's test and valid contexts are sampled from the base and from the tuned run with the
service's `Generator` and its default sampling, and an authorship classifier fitted here on the chat's real
messages (char 1–4-gram TF-IDF + logistic regression, scikit-learn: independent of the project's own fidelity
code) says whose they are. Printed per size: the share attributed to X before and after, the share of replies
that stopped on their own (finish_reason "stop" before max_new_tokens), steps and wall time of `train`.
Needs scikit-learn (`pip install scikit-learn`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parents[1]
MAKE_SAMPLE = REPO / "examples" / "chat_export" / "make_sample.py"
CONTEXTS = 120  # sampled replies per model: ±4.5 points of a share at 80 %, 95 % confidence


def _texts(export: Path) -> tuple[list[str], list[str]]:
    """Authors and plain texts of the export's messages with text."""
    authors, texts = [], []
    for message in json.loads(export.read_text(encoding="utf-8"))["messages"]:
        text = message.get("text", "")
        if isinstance(text, list):
            text = "".join(part if isinstance(part, str) else part.get("text", "") for part in text)
        if message.get("type") == "message" and message.get("from") and text.strip() \
                and not message.get("forwarded_from"):
            authors.append(message["from"])
            texts.append(text.strip())
    return authors, texts


def fit_classifier(export: Path) -> tuple[object, float]:
    """Char n-gram authorship model on the chat's messages; returns it refitted on all and its held-out accuracy."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    authors, texts = _texts(export)

    def model() -> object:
        # char_wb keeps punctuation and case (")))", "!!!", emoji, capitals) that tell these speakers apart
        return make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=False,
                                             sublinear_tf=True, min_df=2),
                             LogisticRegression(max_iter=2000, C=10.0))

    x_train, x_test, y_train, y_test = train_test_split(texts, authors, test_size=0.2, random_state=0,
                                                        stratify=authors)
    accuracy = model().fit(x_train, y_train).score(x_test, y_test)
    return model().fit(texts, authors), accuracy


def sample_replies(path: Path, contexts: list, seed: int) -> list:
    """One reply per context with the service's Generator and the model's default sampling."""
    from sobesednik.inference.generator import Generator, Row

    generator = Generator.load(path)
    params = generator.defaults
    requests = [Row(generator.chat_prompt(context, params.max_new_tokens), params.with_overrides(seed=seed + i))
                for i, context in enumerate(contexts)]
    completions = []
    for start in range(0, len(requests), 16):  # batches of 16: the service's typical load
        completions += generator.generate(requests[start:start + 16])
    return completions


def shares(classifier: object, completions: list, speaker: str) -> tuple[float, float]:
    """Share of replies attributed to `speaker` (an empty reply counts against) and share that stopped."""
    texts = [completion.text for completion in completions]
    predicted = classifier.predict([text for text in texts if text]) if any(texts) else []
    attributed = sum(author == speaker for author in predicted)
    stopped = sum(completion.finish_reason == "stop" for completion in completions)
    return attributed / len(completions), stopped / len(completions)


def run_size(messages: int, speaker: str, seed: int, variants: list[str], work: Path) -> Iterator[dict]:
    from sobesednik.data.prepare import prepare
    from sobesednik.data.settings import PrepareSettings
    from sobesednik.dialogue import data_file, read_jsonl
    from sobesednik.training.pretrain import build_tiny_base
    from sobesednik.training.settings import TinyModelSettings, TrainSettings
    from sobesednik.training.train import train

    export = work / "result.json"
    subprocess.run([sys.executable, str(MAKE_SAMPLE), "--seed", str(seed), "--messages", str(messages),
                    "-o", str(export)], check=True, capture_output=True)
    classifier, accuracy = fit_classifier(export)
    prepare(PrepareSettings(exports=[export], out=work / "all", progress=False, _env_file=None))
    started = time.perf_counter()
    base = build_tiny_base(TinyModelSettings(data=work / "all", out=work / "base", _env_file=None)).model_dir
    base_seconds = time.perf_counter() - started
    prepare(PrepareSettings(exports=[export], out=work / "one", speaker=[speaker], progress=False, _env_file=None))
    dialogues = read_jsonl(data_file(work / "one", "test")) + read_jsonl(data_file(work / "one", "valid"))
    contexts = [dialogue[:-1] for dialogue in dialogues[:CONTEXTS]]
    base_share, base_stop = shares(classifier, sample_replies(base, contexts, seed), speaker)
    for number, variant in enumerate(variants):
        flags = dict(_flag(flag) for flag in variant.split(",") if flag)
        started = time.perf_counter()
        result = train(TrainSettings(data=work / "one", base=str(base), out=work / f"run{number}", _env_file=None,
                                     **flags))
        train_seconds = time.perf_counter() - started
        tuned = sample_replies(work / f"run{number}", contexts, seed)
        tuned_share, tuned_stop = shares(classifier, tuned, speaker)
        yield {"variant": variant or "defaults", "messages": len(_texts(export)[0]),
                     "train_samples": result.train_samples, "steps": result.steps, "base_s": round(base_seconds),
                     "train_s": round(train_seconds), "classifier_accuracy": accuracy, "contexts": len(contexts),
                     "base_share": base_share, "tuned_share": tuned_share, "base_stop": base_stop,
                     "tuned_stop": tuned_stop, "best_valid_loss": result.best_valid_loss,
                     "examples": [c.text for c in tuned[:5]]}


def _flag(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    try:
        return name.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:  # a bare string
        return name.replace("-", "_"), value


def main() -> None:
    from sobesednik.hardware import probe, training_precision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[1500, 10000],
                        help="generated messages per chat (the hand-written fortnight's 466 come on top)")
    parser.add_argument("--speaker", default="Дима Соколов", help="the persona (the lowercase one by default)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the held-out chat (the shipped one is 20240301)")
    parser.add_argument("--variant", action="append", metavar="NAME=VALUE,...",
                        help="TrainSettings fields to set for one more run beside the defaults; repeat "
                             "(default: the old recipe, learning_rate=2e-4,min_steps=0)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    variants = ["", *(args.variant if args.variant is not None else ["learning_rate=2e-4,min_steps=0"])]
    print(f"{probe().describe()}: trains in {training_precision('auto')}", flush=True)

    rows = []
    for messages in args.messages:
        with TemporaryDirectory(prefix="persona-") as work:
            for row in run_size(messages, args.speaker, args.seed, variants, Path(work)):
                rows.append(row)
                print(f"{row['messages']:>6} msgs {row['train_samples']:>5} samples | {row['variant']:<40} "
                      f"{row['steps']:>4} steps {row['train_s']:>4}s | classifier {row['classifier_accuracy']:.3f} | "
                      f"{args.speaker}: base {row['base_share']:.0%} → tuned {row['tuned_share']:.0%} | "
                      f"stop base {row['base_stop']:.0%} → tuned {row['tuned_stop']:.0%}", flush=True)
                for text in row["examples"]:
                    print(f"    {text!r}")
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
