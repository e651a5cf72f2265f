"""Persona fidelity: how much a model's sampled replies are the target speaker's (docs/fidelity.md).

    reference = load_reference(Path("data"))              # fitted on data/speakers.jsonl, the train split only
    figures = measure_fidelity(reference, replies, finish_reasons, real_replies)
    figures["fidelity"]                                   # the share of replies attributed to the target

An authorship model (character n-gram TF-IDF + logistic regression, scikit-learn) is fitted on every
speaker's real train replies; the headline `fidelity` is the share of sampled replies it attributes to the
target. Beside it: the same share for the target's real held-out replies (the ceiling on this chat) and for
chance, Wasserstein distances between per-reply style features of the sampled and the real replies, and the
stop rate (replies that ended on their own before the token limit). `reference_or_reason` turns a dataset that
cannot support the authorship model (one speaker, too few replies) into a one-line reason instead.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sobesednik.data.prepare import SPEAKERS_FILE
from sobesednik.errors import SobesednikError
from sobesednik.training.metrics import EMOJI, PUNCTUATION

FIDELITY_DEFINITION = ("fidelity = share of sampled replies that an authorship model fitted on the chat's real "
                       "train replies attributes to the target speaker (an empty reply counts as not the target's)")
MIN_TARGET_REPLIES = 10  # train replies of the target below which its n-gram profile is mostly noise
MIN_SPEAKER_REPLIES = 5  # another speaker with fewer replies is left out of the authorship model (too few to learn)
CHARACTERISTIC_WORDS = 30  # the target's words by log-odds that the characteristic-word share counts
_WORD = re.compile(r"\w+")
# The per-reply style features (`reply_features`) whose distributions are compared.
FEATURE_NAMES = ("words", "emoji", "punctuation_per_char", "lowercase_share", "characteristic_word_share")


class FidelityError(SobesednikError):
    """The data cannot support the authorship model (one speaker, too few replies, no speakers.jsonl)."""


@dataclass(frozen=True)
class FidelityReference:
    """What sampled replies are measured against: the fitted authorship model and the target's words."""

    target: str
    speakers: list[str]  # the authorship model's classes
    authorship: Any  # a fitted sklearn Pipeline: text → speaker
    characteristic_words: frozenset[str]


def read_speakers(data_dir: Path) -> tuple[str, list[tuple[str, str]]]:
    """The dataset's one target author id and every (speaker, reply) of its train split (`prepare` writes both)."""
    manifest_path, speakers_path = data_dir / "manifest.json", data_dir / SPEAKERS_FILE
    if not speakers_path.is_file() or not manifest_path.is_file():
        raise FidelityError(f"{data_dir} has no {SPEAKERS_FILE} and manifest.json: re-run `sobesednik prepare` "
                            "(a dataset from an older version lacks them)")
    targets = json.loads(manifest_path.read_text(encoding="utf-8")).get("targets", [])
    if len(targets) != 1:
        raise FidelityError(f"the dataset's replies are of {len(targets)} authors (prepare without --speaker): "
                            "fidelity needs one target, so prepare with --speaker NAME")
    rows = [json.loads(line) for line in speakers_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return targets[0], [(row["speaker"], row["text"]) for row in rows]


def fit_reference(replies: Sequence[tuple[str, str]], target: str) -> FidelityReference:
    """Fit the authorship model on (speaker, text) pairs; raises `FidelityError` when the data cannot support it."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from threadpoolctl import threadpool_limits

    counts = Counter(speaker for speaker, _ in replies)
    if counts[target] < MIN_TARGET_REPLIES:
        raise FidelityError(f"the target {target} has {counts[target]} train replies; the authorship model needs "
                            f"at least {MIN_TARGET_REPLIES}: prepare more of the chat's history")
    speakers = sorted(speaker for speaker, count in counts.items() if count >= MIN_SPEAKER_REPLIES)
    if len(speakers) < 2:
        raise FidelityError(f"only the target {target} has {MIN_SPEAKER_REPLIES}+ replies in the chat: telling "
                            "the target from others needs a second speaker, so prepare a chat with several")
    kept = [(speaker, text) for speaker, text in replies if speaker in speakers]
    # Characters within word boundaries keep case, emoji, punctuation and word endings: the style signals of
    # short chat messages (docs/fidelity.md has the comparison with word n-grams). Balanced weights keep a
    # talkative speaker from taking every doubtful reply.
    authorship = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=False, sublinear_tf=True, min_df=2),
        LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000),
    )
    # One BLAS thread: on a few thousand replies that is the fastest (measured 0.3 s against 12 s with two
    # threads on a busy 2-core machine, where the threads of torch and BLAS fight over the cores).
    with threadpool_limits(1):
        authorship.fit([text for _, text in kept], [speaker for speaker, _ in kept])
    return FidelityReference(target, speakers, authorship, frozenset(characteristic_words(kept, target)))


def load_reference(data_dir: Path) -> FidelityReference:
    """`fit_reference` on a prepared dataset dir's `speakers.jsonl` and manifest target."""
    target, replies = read_speakers(data_dir)
    return fit_reference(replies, target)


def reference_or_reason(data_dir: Path) -> FidelityReference | str:
    """The reference, or the one-line reason why this dataset cannot have one."""
    try:
        return load_reference(data_dir)
    except FidelityError as error:
        return str(error)


def characteristic_words(replies: Sequence[tuple[str, str]], target: str,
                         top: int = CHARACTERISTIC_WORDS) -> list[str]:
    """The target's most characteristic words against the other speakers, by weighted log-odds.

    The log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, "Fightin' Words"),
    divided by its standard deviation: rare words do not win by chance, frequent ones shared by all do not win.
    """
    mine, theirs = Counter(), Counter()
    for speaker, text in replies:
        (mine if speaker == target else theirs).update(_WORD.findall(text.lower()))
    prior = mine + theirs
    prior_total = sum(prior.values())
    scale = 10.0  # prior strength in words; small against the chat, so the data decides
    n_mine, n_theirs = sum(mine.values()), sum(theirs.values())

    def z_score(word: str) -> float:
        alpha = scale * prior[word] / prior_total
        a0 = scale
        delta = (math.log((mine[word] + alpha) / (n_mine + a0 - mine[word] - alpha))
                 - math.log((theirs[word] + alpha) / (n_theirs + a0 - theirs[word] - alpha)))
        return delta / math.sqrt(1 / (mine[word] + alpha) + 1 / (theirs[word] + alpha))

    scored = sorted((word for word in mine if mine[word] >= 2), key=lambda word: (-z_score(word), word))
    return [word for word in scored[:top] if z_score(word) > 0]


def reply_features(reply: str, words: frozenset[str]) -> dict[str, float]:
    """Per-reply style features whose distributions the sampled and the real replies are compared on."""
    tokens = _WORD.findall(reply.lower())
    letters = [ch for ch in reply if ch.isalpha()]
    return {
        "words": float(len(reply.split())),
        "emoji": float(len(EMOJI.findall(reply))),
        "punctuation_per_char": len(PUNCTUATION.findall(reply)) / max(len(reply), 1),
        "lowercase_share": sum(ch.islower() for ch in letters) / len(letters) if letters else 1.0,
        "characteristic_word_share": sum(token in words for token in tokens) / len(tokens) if tokens else 0.0,
    }


def stop_rate(finish_reasons: Sequence[str]) -> float:
    """Share of completions that ended on their own (`finish_reason == "stop"`), not at the token limit."""
    return sum(reason == "stop" for reason in finish_reasons) / len(finish_reasons) if finish_reasons else 0.0


def target_share(reference: FidelityReference, replies: Sequence[str]) -> float:
    """Share of `replies` the authorship model attributes to the target; an empty reply is nobody's."""
    if not replies:
        return 0.0
    texts = [reply for reply in replies if reply.strip()]
    predicted = reference.authorship.predict(texts) if texts else []
    return sum(speaker == reference.target for speaker in predicted) / len(replies)


def _mean_target_probability(reference: FidelityReference, replies: Sequence[str]) -> float:
    texts = [reply for reply in replies if reply.strip()]
    if not texts:
        return 0.0
    column = list(reference.authorship.classes_).index(reference.target)
    return float(reference.authorship.predict_proba(texts)[:, column].sum() / len(replies))


def style_distances(reference: FidelityReference, replies: Sequence[str], real: Sequence[str]) -> dict[str, Any]:
    """Per feature: the mean over sampled and real replies and the Wasserstein distance between the two."""
    from scipy.stats import wasserstein_distance

    mine = [reply_features(reply, reference.characteristic_words) for reply in replies]
    theirs = [reply_features(reply, reference.characteristic_words) for reply in real]
    result: dict[str, Any] = {}
    for name in FEATURE_NAMES if mine and theirs else ():
        a, b = [row[name] for row in mine], [row[name] for row in theirs]
        result[name] = {"sampled": sum(a) / len(a), "real": sum(b) / len(b),
                        "distance": float(wasserstein_distance(a, b))}
    return result


def measure_fidelity(reference: FidelityReference | str, replies: Sequence[str], finish_reasons: Sequence[str],
                     real: Sequence[str]) -> dict[str, Any]:
    """The fidelity block for one model's sampled `replies` to contexts whose real replies are `real`.

    With a reason instead of a reference only the stop rate is computed, and `unavailable` says why.
    """
    figures: dict[str, Any] = {"replies": len(replies), "stop_rate": stop_rate(finish_reasons)}
    if isinstance(reference, str):
        return figures | {"fidelity": None, "target_share": None, "unavailable": reference}
    share = target_share(reference, replies)
    return figures | {
        "fidelity": share,
        "target_share": share,
        "target_probability": _mean_target_probability(reference, replies),
        "real_target_share": target_share(reference, real),
        "chance": 1 / len(reference.speakers),
        "target": reference.target,
        "speakers": len(reference.speakers),
        "style_distance": style_distances(reference, replies, real),
    }
