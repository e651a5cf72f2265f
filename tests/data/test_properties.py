"""Property tests: `prepare` never crashes on structurally valid exports, every sample meets the contract, and
the same messages give the same dataset in every layout of the file."""

from __future__ import annotations

import json
import tempfile
from itertools import pairwise
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sobesednik.data.split import SPLITS
from sobesednik.errors import DatasetError, ExportFormatError

from .exports import LAYOUTS, START, read_jsonl, run_prepare

_words = st.sampled_from(["привет", "да", "нет", "ок", "едем", "😂", "https://ya.ru", "@ivan", "+79123456789", " ", ""])
_text = st.lists(_words, max_size=6).map(" ".join)
_entity = st.fixed_dictionaries({"type": st.sampled_from(["bold", "link", "mention", "phone", "plain"]), "text": _text})
# Odd `text` values too; integers stay within 64 bits, the most the C parser takes (bigger: a clear error).
_odd = st.one_of(st.integers(-(2**62), 2**62), st.none(), st.just({"text": "x"}))
_rich_text = st.one_of(_text, st.lists(st.one_of(_text, _entity), max_size=4), _odd)
_author = st.sampled_from(["user1", "user2", "user3", 4, None])


@st.composite
def exports(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=0, max_value=40))
    messages: list[dict[str, Any]] = []
    date = START
    for index in range(count):
        message_id = draw(st.sampled_from([index + 1, index + 1, index + 1, max(1, index)]))  # some duplicate ids
        date += draw(st.sampled_from([5, 30, 200, 5000]))
        if draw(st.integers(0, 9)) == 0:
            messages.append({"id": message_id, "type": "service", "date_unixtime": str(date),
                             "action": draw(st.sampled_from(["pin_message", "topic_created"])), "text": ""})
            continue
        author = draw(_author)
        message: dict[str, Any] = {"id": message_id, "type": "message", "date_unixtime": str(date),
                                   "from": None if author is None else "Имя", "from_id": author or "user9",
                                   "text": draw(_rich_text), "unknown_field": [1, {"x": None}]}
        if draw(st.booleans()):
            message["reply_to_message_id"] = draw(st.integers(min_value=0, max_value=count + 2))
        extra = draw(st.sampled_from([None, "forwarded_from", "via_bot", "photo"]))
        if extra is not None:
            message[extra] = draw(st.sampled_from([None, "x"])) if extra == "forwarded_from" else "x"
        messages.append(message)
    return {"name": "Чат", "type": "private_group", "id": 5, "messages": messages}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(export=exports(), options=st.fixed_dictionaries({
    "context_turns": st.integers(1, 4), "merge_seconds": st.sampled_from([0, 60, 600]),
    "mask_pii": st.booleans(), "keep_forwarded": st.booleans(), "split_by": st.sampled_from(["random", "time"]),
    "valid": st.sampled_from([0.0, 0.2]), "test": st.sampled_from([0.0, 0.3]), "min_chars": st.integers(1, 3)}))
def test_prepare_never_crashes_and_samples_meet_the_contract(export: dict[str, Any], options: dict[str, Any]):
    with tempfile.TemporaryDirectory() as temp:
        path = Path(temp) / "result.json"
        path.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
        try:
            stats = run_prepare(path, Path(temp) / "out", **options)
        except (ExportFormatError, DatasetError) as error:  # no usable text / no samples: a clean refusal
            assert "no message with usable text" in str(error) or "no samples left" in str(error)
            return
        # Ids that more than one message carries name different messages, which may land in different splits.
        ids = [message["id"] for message in export["messages"]]
        unique = {message_id for message_id in ids if ids.count(message_id) == 1}
        split_of_message: dict[int, str] = {}
        total = 0
        for split in SPLITS:
            for row in read_jsonl(Path(temp) / "out" / f"{split}.jsonl"):
                total += 1
                messages = row["messages"]
                assert len(messages) >= 2 and len(messages) <= options["context_turns"] + 1
                assert messages[-1]["role"] == "assistant"
                assert all(a["role"] != b["role"] for a, b in pairwise(messages))
                assert all(message["content"].strip() for message in messages)
                for message_id in set(row["meta"]["message_ids"]) & unique:
                    # A message in two splits would leak text from training into evaluation.
                    assert split_of_message.setdefault(message_id, split) == split
        assert total == stats["samples"]


def _prepared(path: Path, out: Path, options: dict[str, Any]) -> dict[str, str] | str:
    """The dataset files and stats.json of a run, or the error it stopped with."""
    try:
        run_prepare(path, out, **options)
    except (ExportFormatError, DatasetError) as error:
        return str(error).replace(str(path), "EXPORT")
    return {name: (out / name).read_text(encoding="utf-8")
            for name in [*(f"{split}.jsonl" for split in SPLITS), "stats.json"]}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(export=exports(), options=st.fixed_dictionaries({"context_turns": st.integers(1, 4),
                                                        "merge_seconds": st.sampled_from([0, 600])}))
def test_every_layout_of_the_same_messages_gives_the_same_dataset(export: dict[str, Any], options: dict[str, Any]):
    with tempfile.TemporaryDirectory() as temp:
        results = {}
        for layout, write in LAYOUTS.items():
            path = Path(temp) / layout / "result.json"
            path.parent.mkdir()
            path.write_bytes(write(export))
            results[layout] = _prepared(path, Path(temp) / layout / "out", options)
        assert all(result == results["telegram"] for result in results.values()), list(results)
