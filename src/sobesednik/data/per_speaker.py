"""`prepare --per-speaker`: one dataset per person of a chat, for one `train` (one persona) each.

    sobesednik prepare result.json --out data --per-speaker
    # data/everyone/            the dataset of every author (what the speaker counts come from)
    # data/user512377804/       the dataset of one author's replies (= prepare --speaker user512377804)
    # data/personas.json        who got a dataset, with how many train replies, and who had too few

An author gets a dataset when their train-split replies in the everyone dataset (`speakers.jsonl`) reach
`min_speaker_replies`; the others are listed with their counts. Each dataset is exactly what
`prepare --speaker ID` writes, so its `speakers.jsonl`, stats and fidelity measurement are the same.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sobesednik.data.prepare import SPEAKERS_FILE, PrepareResult, prepare
from sobesednik.data.settings import PrepareSettings
from sobesednik.errors import DatasetError

EVERYONE = "everyone"
PERSONAS_FILE = "personas.json"


@dataclass(frozen=True)
class PerSpeakerResult:
    everyone: PrepareResult
    speakers: dict[str, PrepareResult]  # author id → that author's dataset
    too_few: dict[str, int]  # author id → train replies, below the threshold


def prepare_per_speaker(settings: PrepareSettings) -> PerSpeakerResult:
    """Prepare every author's dataset; raises `DatasetError` when nobody has enough replies."""
    everyone = prepare(settings.model_copy(update={"per_speaker": False, "out": settings.out / EVERYONE}))
    with (everyone.out / SPEAKERS_FILE).open(encoding="utf-8") as lines:
        replies = Counter(json.loads(line)["speaker"] for line in lines)
    enough = sorted(author for author, count in replies.items() if count >= settings.min_speaker_replies)
    too_few = {author: count for author, count in replies.most_common() if author not in enough}
    if not enough:
        best = ", ".join(f"{author}: {count}" for author, count in replies.most_common(3))
        raise DatasetError(f"no author has {settings.min_speaker_replies} train replies for a persona (most: "
                           f"{best}): lower --min-speaker-replies, or export a longer stretch of the chat")
    speakers = {author: prepare(settings.model_copy(update={"per_speaker": False, "speaker": [author],
                                                             "out": settings.out / author}))
                for author in enough}
    names = everyone.stats["authors"].get("names", {})  # only with --show-names: names are personal data
    listing = {"min_speaker_replies": settings.min_speaker_replies,
               "personas": [{"speaker": author, "names": names.get(author, []), "train_replies": replies[author],
                             "data": str(Path(author))} for author in enough],
               "too_few": [{"speaker": author, "names": names.get(author, []), "train_replies": count}
                           for author, count in too_few.items()]}
    (settings.out / PERSONAS_FILE).write_text(json.dumps(listing, ensure_ascii=False, indent=1) + "\n",
                                              encoding="utf-8")
    return PerSpeakerResult(everyone, speakers, too_few)
