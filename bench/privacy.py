"""Benchmark name masking (`prepare --mask-pii`) against `prepare` without it, on text made from the sample chat.

    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/privacy.py                     # 200,000 messages
    flock /tmp/sobesednik-bench.lock .venv/bin/python bench/privacy.py --messages 1000000

Messages are random runs of 2-18 words drawn from the shipped sample chat's own words (so the vocabulary and the
share of names are a real chat's, not a list of ten words), every message different. Two figures, each beside
its baseline in the same run: `NameMasker.mask` per message against plain `str.split` of the same text (the
cheapest pass any masking must make), and `prepare` on the sample export with `--mask-pii` against without it.
The per-message rate is extrapolated to 1,000,000 messages.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from sobesednik.data.prepare import prepare
from sobesednik.data.privacy import NameMasker
from sobesednik.data.settings import PrepareSettings
from sobesednik.data.telegram_export import visible_text
from sobesednik.hardware import probe

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chat_export" / "result.json"


def _messages(count: int, seed: int) -> tuple[list[str], set[str]]:
    export = json.loads(SAMPLE.read_text(encoding="utf-8"))
    words = [word for message in export["messages"]
             for word in visible_text(message.get("text", ""), Counter(), mask_pii=False).split()]
    authors = {message["from"] for message in export["messages"] if message.get("from")}
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 18))) + f" {index}" for index in range(count)]
    return texts, authors


def _prepare_seconds(mask_pii: bool, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            prepare(PrepareSettings(exports=[SAMPLE], out=Path(out), mask_pii=mask_pii, progress=False,
                                    _env_file=None))
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3, help="prepare runs per variant; the best is kept")
    args = parser.parse_args()
    print(f"hardware: {probe()}")
    texts, authors = _messages(args.messages, seed=0)

    start = time.perf_counter()
    masker = NameMasker(authors)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for text in texts:
        text.split()
    split = time.perf_counter() - start
    start = time.perf_counter()
    for text in texts:
        masker.mask(text)
    masking = time.perf_counter() - start
    rate = len(texts) / masking
    print(f"NameMasker: {setup:.2f} s to load pymorphy3 and seed {len(authors)} authors")
    print(f"mask: {len(texts):,} messages in {masking:.1f} s = {rate:,.0f} messages/s "
          f"({masking / split:.0f}x str.split); 1,000,000 messages ≈ {1_000_000 / rate:.0f} s")
    print(f"masked: {dict(masker.counts)}")

    plain = _prepare_seconds(False, args.repeats)
    masked = _prepare_seconds(True, args.repeats)
    print(f"prepare on the sample ({SAMPLE.name}): {plain:.2f} s plain, {masked:.2f} s with --mask-pii "
          f"({masked / plain:.2f}x)")


if __name__ == "__main__":
    main()
