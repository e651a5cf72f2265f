"""prepare --per-speaker: one dataset per author with enough train replies, each equal to `--speaker ID`'s."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from sobesednik.data.per_speaker import PERSONAS_FILE, prepare_per_speaker
from sobesednik.data.prepare import SPEAKERS_FILE, prepare
from sobesednik.data.settings import PrepareSettings
from sobesednik.errors import DatasetError


def _settings(export: Path, out: Path, **kwargs) -> PrepareSettings:
    return PrepareSettings(exports=[export], out=out, progress=False, _env_file=None, **kwargs)


def test_each_author_with_enough_replies_gets_the_speaker_dataset(sample_export: Path, tmp_path: Path) -> None:
    everyone = prepare(_settings(sample_export, tmp_path / "plain"))
    counts = Counter(json.loads(line)["speaker"]
                     for line in (everyone.out / SPEAKERS_FILE).read_text(encoding="utf-8").splitlines())
    (_, most), (_, second), *_ = counts.most_common()
    assert most > second  # a threshold between them leaves exactly one persona
    threshold = second + 1
    result = prepare_per_speaker(_settings(sample_export, tmp_path / "out", per_speaker=True,
                                           min_speaker_replies=threshold))
    [author] = result.speakers
    assert counts[author] == most and set(result.too_few) == set(counts) - {author}
    alone = prepare(_settings(sample_export, tmp_path / "alone", speaker=[author]))
    for split in ("train", "valid", "test"):
        assert (result.speakers[author].out / f"{split}.jsonl").read_bytes() == \
            (alone.out / f"{split}.jsonl").read_bytes()
    listing = json.loads((tmp_path / "out" / PERSONAS_FILE).read_text(encoding="utf-8"))
    assert listing["personas"] == [{"speaker": author, "names": [], "train_replies": most, "data": author}]
    assert {row["speaker"]: row["train_replies"] for row in listing["too_few"]} == result.too_few
    assert listing["min_speaker_replies"] == threshold


def test_nobody_with_enough_replies_is_one_clear_error(sample_export: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no author has 100000 train replies .*lower --min-speaker-replies"):
        prepare_per_speaker(_settings(sample_export, tmp_path, per_speaker=True, min_speaker_replies=100_000))


def test_per_speaker_with_speaker_is_refused() -> None:
    with pytest.raises(ValidationError, match="drop --speaker"):
        PrepareSettings(exports=[Path("x.json")], per_speaker=True, speaker=["Аня"], _env_file=None)
