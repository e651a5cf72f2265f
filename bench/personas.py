"""Two personas in one `serve` process: are replies asked of each adapter by name written like that adapter's person?

    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/personas.py     # ~10 min on 2 busy cores
    .venv/bin/python bench/personas.py --speakers "Дима Соколов" "Оля Ковалёва" --messages 1500

A held-out chat (`examples/chat_export/make_sample.py --seed 7`, as in bench/persona.py), `prepare` of everyone
→ `tiny-model` (the base knows the whole chat, not the people); for each of two speakers `prepare --speaker X`
→ `train` with its defaults on that base. Then ONE `sobesednik serve --model BASE --adapter a=RUN_A --adapter
b=RUN_B` process, and each speaker's test and valid contexts are sent to it over HTTP by 16 concurrent users,
asking for the adapter of that speaker by name (so batches mix both adapters), with the service's default
sampling. bench/persona.py's authorship classifier (fitted on the chat's real messages, scikit-learn) attributes
the replies. Printed: per adapter, the share of its replies attributed to its own speaker and to the other one.
Needs scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))  # the service launcher

from persona import CONTEXTS, MAKE_SAMPLE, fit_classifier  # noqa: E402

USERS = 16
NAMES = ("first", "second")  # the adapters' names in the service


def main() -> None:
    from service_process import run_service
    from sobesednik.data.prepare import prepare
    from sobesednik.data.settings import PrepareSettings
    from sobesednik.dialogue import data_file, read_jsonl
    from sobesednik.hardware import probe, serving_path
    from sobesednik.training.pretrain import build_tiny_base
    from sobesednik.training.settings import TinyModelSettings, TrainSettings
    from sobesednik.training.train import train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500, help="generated messages (466 hand-written on top)")
    parser.add_argument("--speakers", nargs=2, default=["Дима Соколов", "Оля Ковалёва"])
    parser.add_argument("--seed", type=int, default=7, help="seed of the held-out chat (the shipped one is 20240301)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    print(f"{probe().describe()}: serves {serving_path('auto', 'auto').describe()}", flush=True)
    with TemporaryDirectory(prefix="personas-") as tmp:
        work = Path(tmp)
        export = work / "result.json"
        subprocess.run([sys.executable, str(MAKE_SAMPLE), "--seed", str(args.seed), "--messages",
                        str(args.messages), "-o", str(export)], check=True, capture_output=True)
        classifier, accuracy = fit_classifier(export)
        prepare(PrepareSettings(exports=[export], out=work / "all", progress=False, _env_file=None))
        base = build_tiny_base(TinyModelSettings(data=work / "all", out=work / "base", _env_file=None)).model_dir
        contexts, runs = {}, {}
        for name, speaker in zip(NAMES, args.speakers, strict=True):
            data = work / f"data-{name}"
            prepare(PrepareSettings(exports=[export], out=data, speaker=[speaker], progress=False, _env_file=None))
            dialogues = read_jsonl(data_file(data, "test")) + read_jsonl(data_file(data, "valid"))
            contexts[name] = [dialogue[:-1] for dialogue in dialogues[:CONTEXTS]]
            runs[name] = train(TrainSettings(data=data, base=str(base), out=work / f"run-{name}",
                                             _env_file=None)).run_dir
        flags = tuple(part for name in NAMES for part in ("--adapter", f"{name}={runs[name]}"))
        with run_service(base, args=(*flags, "--request-timeout-s", "3600"), ready_timeout=600) as service:
            jobs = [(name, i, context) for name in NAMES for i, context in enumerate(contexts[name])]

            def ask(job: tuple[str, int, list]) -> tuple[str, str]:
                name, i, context = job
                response = httpx.post(f"{service.url}/v1/chat/completions", timeout=3600,
                                      json={"model": name, "messages": context, "seed": args.seed + i})
                response.raise_for_status()
                assert response.json()["model"] == name
                return name, response.json()["choices"][0]["message"]["content"]

            with ThreadPoolExecutor(USERS) as pool:
                replies = list(pool.map(ask, jobs))
    print(f"chat of {args.messages} + 466 messages, classifier accuracy {accuracy:.1%} on held-out real messages")
    rows = []
    for name, speaker in zip(NAMES, args.speakers, strict=True):
        texts = [text for owner, text in replies if owner == name]
        predicted = list(classifier.predict([text for text in texts if text])) if any(texts) else []
        own = sum(author == speaker for author in predicted) / len(texts)  # an empty reply counts against
        other = sum(author in args.speakers and author != speaker for author in predicted) / len(texts)
        rows.append({"adapter": name, "speaker": speaker, "replies": len(texts), "own_share": own,
                     "other_share": other, "examples": texts[:3]})
        print(f"adapter {name!r} ({speaker}): {len(texts)} replies, {own:.0%} attributed to {speaker}, "
              f"{other:.0%} to the other persona", flush=True)
        for text in texts[:3]:
            print(f"    {text!r}")
    if args.json:
        args.json.write_text(json.dumps({"classifier_accuracy": accuracy, "rows": rows}, ensure_ascii=False,
                                        indent=1))


if __name__ == "__main__":
    main()
