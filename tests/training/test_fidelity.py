"""Persona fidelity: the authorship model tells distinct speakers apart, and the figures built on it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from sobesednik.training.fidelity import (
    FEATURE_NAMES,
    FidelityError,
    characteristic_words,
    fit_reference,
    measure_fidelity,
    read_speakers,
    reply_features,
    stop_rate,
    target_share,
)

# Three synthetic speakers as different as real chat styles get: lowercase slang without punctuation, formal
# capitalised sentences, and emoji with exclamation marks.
_STYLES = {
    "user1": (["ну", "короче", "типа", "щас", "норм", "го", "лол", "чо", "вообще", "кароч"],
              lambda words: " ".join(words)),
    "user2": (["Добрый", "день", "Пожалуйста", "уточните", "Благодарю", "Спасибо", "коллеги", "вопрос", "Согласен"],
              lambda words: " ".join(words).capitalize() + "."),
    "user3": (["ура", "супер", "класс", "обожаю", "вау", "круто", "милота", "да"],
              lambda words: " ".join(words) + " 😍🎉!!!"),
}


def _messages(speaker: str, count: int, seed: int) -> list[tuple[str, str]]:
    words, shape = _STYLES[speaker]
    rng = random.Random(seed)
    return [(speaker, shape(rng.choices(words, k=rng.randint(2, 6)))) for _ in range(count)]


@pytest.fixture(scope="module")
def reference():
    train = [pair for index, speaker in enumerate(_STYLES) for pair in _messages(speaker, 40, index)]
    return fit_reference(train, "user1")


def test_authorship_model_attributes_held_out_messages_of_distinct_speakers(reference):
    held_out = [pair for index, speaker in enumerate(_STYLES) for pair in _messages(speaker, 20, 100 + index)]
    predicted = reference.authorship.predict([text for _, text in held_out])
    accuracy = sum(guess == speaker for guess, (speaker, _) in zip(predicted, held_out, strict=True)) / len(held_out)
    assert accuracy >= 0.9
    assert reference.speakers == ["user1", "user2", "user3"]


def test_target_share_is_high_for_the_targets_replies_and_low_for_anothers(reference):
    assert target_share(reference, [text for _, text in _messages("user1", 30, 7)]) >= 0.9
    assert target_share(reference, [text for _, text in _messages("user2", 30, 8)]) <= 0.1
    # An empty reply is nobody's: it counts against the target.
    assert target_share(reference, ["", "ну короче щас"]) == pytest.approx(0.5)


def test_characteristic_words_are_the_targets_own():
    replies = [pair for index, speaker in enumerate(_STYLES) for pair in _messages(speaker, 40, index)]
    replies += [("user1", "да да"), ("user2", "да"), ("user3", "да")]  # shared by all: not characteristic
    words = characteristic_words(replies, "user1", top=5)
    assert len(words) == 5 and set(words) <= set(_STYLES["user1"][0])


def test_stop_rate_counts_only_replies_that_ended_on_their_own():
    assert stop_rate(["stop", "length", "empty", "stop"]) == pytest.approx(0.5)
    assert stop_rate(["length", "cancelled"]) == 0.0
    assert stop_rate([]) == 0.0


def test_measure_fidelity_of_the_targets_real_replies(reference):
    real = [text for _, text in _messages("user1", 20, 11)]
    figures = measure_fidelity(reference, real, ["stop"] * 15 + ["length"] * 5, real)
    assert figures["fidelity"] == figures["target_share"] >= 0.9
    assert figures["stop_rate"] == pytest.approx(0.75)
    assert figures["chance"] == pytest.approx(1 / 3)
    assert set(figures["style_distance"]) == set(FEATURE_NAMES)
    assert all(row["distance"] == 0 for row in figures["style_distance"].values())  # the same replies
    formal = [text for _, text in _messages("user2", 20, 12)]
    far = measure_fidelity(reference, formal, ["stop"] * 20, real)["style_distance"]
    assert far["lowercase_share"]["distance"] > 0.01 and far["punctuation_per_char"]["distance"] > 0.01
    assert far["characteristic_word_share"]["distance"] > 0.5


def test_reply_features_of_a_known_reply():
    features = reply_features("ну Привет, лол 😂", frozenset({"лол"}))
    assert features["words"] == 4 and features["emoji"] == 1
    assert features["punctuation_per_char"] == pytest.approx(1 / 16)
    assert features["lowercase_share"] == pytest.approx(10 / 11)
    assert features["characteristic_word_share"] == pytest.approx(1 / 3)
    assert set(features) == set(FEATURE_NAMES)


def test_without_a_reference_only_the_stop_rate_is_measured():
    figures = measure_fidelity("the chat has one speaker", ["привет"], ["stop"], ["здравствуй"])
    assert figures == {"replies": 1, "stop_rate": 1.0, "fidelity": None, "target_share": None,
                       "unavailable": "the chat has one speaker"}


def test_data_that_cannot_support_the_authorship_model_is_refused_with_the_reason():
    with pytest.raises(FidelityError, match="telling the target from others needs a second speaker"):
        fit_reference(_messages("user1", 30, 0), "user1")
    with pytest.raises(FidelityError, match="has 4 train replies; the authorship model needs at least 10"):
        fit_reference(_messages("user1", 4, 0) + _messages("user2", 30, 1), "user1")


def test_read_speakers_needs_one_target(tmp_path: Path):
    with pytest.raises(FidelityError, match="re-run `sobesednik prepare`"):
        read_speakers(tmp_path)
    (tmp_path / "speakers.jsonl").write_text('{"speaker": "user1", "text": "ну"}\n', encoding="utf-8")
    (tmp_path / "manifest.json").write_text(json.dumps({"targets": ["user1", "user2"]}), encoding="utf-8")
    with pytest.raises(FidelityError, match=r"of 2 authors .* prepare with --speaker NAME"):
        read_speakers(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"targets": ["user1"]}), encoding="utf-8")
    assert read_speakers(tmp_path) == ("user1", [("user1", "ну")])
