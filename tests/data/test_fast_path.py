"""The orjson fast path gives exactly what ijson gives in every layout, and falls back to it on odd input."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from sobesednik.data import fast_path
from sobesednik.data import telegram_export as telegram_export_module
from sobesednik.data.fast_path import NotFast
from sobesednik.data.raw_message import UNSET, raw_item
from sobesednik.data.telegram_export import ExportStream
from sobesednik.errors import ExportFormatError

from .exports import LAYOUTS as EXPORT_LAYOUTS
from .exports import account, msg, service


def _telegram_layout(chat: dict) -> bytes:
    """A single-chat export written like Telegram Desktop (indent 1, one message opening at `  {`)."""
    return json.dumps(chat, ensure_ascii=False, indent=1).encode()


def _account_of(chat: dict) -> dict:
    """A full account with `chat` between other chats (an empty one, one with tricky text, a left chat)."""
    other = {"name": "Другой", "type": "personal_chat", "id": 7,
             "messages": [msg(1, "user5", 'ещё "messages": [ и }], ')]}
    export = account(other, {"name": "Пусто", "id": 8, "messages": []}, chat, other)
    export["left_chats"]["list"] = [{"name": "Старый", "id": 9, "messages": [msg(1, "user4", "нет")]}]
    return export


LAYOUTS = {
    **{name: write for name, write in EXPORT_LAYOUTS.items() if name != "account"},
    "trailing key": lambda chat: _telegram_layout({**chat, "extra": {"a": [1, 2]}}),
    "account": lambda chat: _telegram_layout(_account_of(chat)),
    "account minified": lambda chat: EXPORT_LAYOUTS["minified"](_account_of(chat)),
}


def _generated_chat(count: int) -> dict:
    messages = []
    for index in range(1, count + 1):
        if index % 17 == 0:
            messages.append(service(index, "topic_created", title="тема"))
        elif index % 5 == 0:
            text = ["ссылка ", {"type": "link", "text": "https://example.com/x"}, {"type": "bold", "text": "}"}]
            messages.append(msg(index, f"user{index % 3}", text, reply_to_message_id=index - 1))
        elif index % 7 == 0:  # what a cut between two messages looks like, in a string and in nested objects
            text = ['}, {"id": 1}], "messages": [{"id": 2},', {"type": "plain", "text": '},{"id":3}]'}]
            messages.append(msg(index, f"user{index % 3}", text, nested=[{"id": 4}, {"id": {"id": 5}}]))
        else:
            messages.append(msg(index, f"user{index % 3}", "строка с \"кавычками\" и \\ и }\n  }", score=0.5))
    return {"name": "Чат", "type": "private_group", "id": 42, "messages": messages}


def _read(path: Path) -> tuple[list[tuple], str]:
    stream = ExportStream(path)
    return list(stream), stream.sha256


def _read_with_ijson(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple], str]:
    with monkeypatch.context() as patch:
        patch.setattr(ExportStream, "_fast", _not_fast)
        return _read(path)


def _not_fast(stream: object, reader: object):
    raise NotFast
    yield  # a generator, like the real one


def _forbid_ijson(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object):
        raise AssertionError("the fast path fell back to ijson")

    monkeypatch.setattr(ExportStream, "_ijson", refuse)


def test_sample_export_takes_the_fast_path_and_equals_ijson(sample_export: Path, monkeypatch: pytest.MonkeyPatch):
    expected = _read_with_ijson(sample_export, monkeypatch)
    _forbid_ijson(monkeypatch)
    assert _read(sample_export) == expected
    assert len(expected[0]) > 100


@pytest.mark.parametrize("chunk", [64, 1 << 20])
def test_generated_export_equals_ijson_at_any_chunk_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int):
    monkeypatch.setattr(telegram_export_module, "_CHUNK", chunk)  # 64 bytes: cuts land mid-message and mid-escape
    path = tmp_path / "result.json"
    # A BOM and Telegram's invalid `\xNN` escapes go through the same byte-level fix-up on both paths.
    path.write_bytes(b"\xef\xbb\xbf" + _telegram_layout(_generated_chat(300)).replace(b"\\\\ ", b"\\x0b "))
    expected = _read_with_ijson(path, monkeypatch)
    _forbid_ijson(monkeypatch)
    assert _read(path) == expected
    assert expected[0][0][1].text == 'строка с "кавычками" и \x0b и }\n  }'


@pytest.mark.parametrize("chunk", [64, 1 << 20])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_takes_the_fast_path_and_equals_ijson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           layout: str, chunk: int):
    monkeypatch.setattr(telegram_export_module, "_CHUNK", chunk)
    path = tmp_path / "result.json"
    path.write_bytes(LAYOUTS[layout](_generated_chat(300)))
    expected = _read_with_ijson(path, monkeypatch)
    _forbid_ijson(monkeypatch)
    pairs, sha256 = _read(path)
    assert (pairs, sha256) == expected
    wanted = [(chat.id, raw.id) for chat, raw in pairs if chat.id == 42]
    assert wanted == [(42, index) for index in range(1, 301)]
    if layout.startswith("account"):  # the other chats, in order; the left chat is not read
        assert [chat.id for chat, _ in pairs if chat.id != 42] == [7, 7]
        assert pairs[0][0] is not pairs[-1][0]  # each chat of the list is its own chat, even with equal fields


@pytest.mark.parametrize("cut", ["truncated", "corrupt message", "garbage after the end"])
def test_broken_files_fail_with_the_ijson_error_and_no_message_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     cut: str):
    monkeypatch.setattr(telegram_export_module, "_CHUNK", 4096)  # several fast-path batches before the damage
    data = _telegram_layout(_generated_chat(300))
    if cut == "truncated":
        data = data[: len(data) * 2 // 3]
    elif cut == "corrupt message":
        middle = data.index(b'"id": 250,')
        data = data[:middle] + b'"id": 250 "oops",' + data[middle + len(b'"id": 250,'):]
    else:
        data += b"\n]"
    path = tmp_path / "result.json"
    path.write_bytes(data)

    def collect() -> tuple[list[int], str]:
        ids: list[int] = []
        with pytest.raises(ExportFormatError) as error:
            for _, raw in ExportStream(path):
                ids.append(raw.id)
        return ids, str(error.value)

    fast_ids, fast_error = collect()
    monkeypatch.setattr(ExportStream, "_fast", _not_fast)
    assert (fast_ids, fast_error) == collect()
    assert fast_ids == list(range(1, len(fast_ids) + 1))
    if cut == "truncated":
        assert "is truncated" in fast_error


@pytest.mark.parametrize("where", ["middle", "end"])
def test_progress_counts_each_byte_once_when_falling_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          where: str):
    monkeypatch.setattr(telegram_export_module, "_CHUNK", 4096)
    chat = _generated_chat(300)
    decode = fast_path.decode_messages
    calls: list[bytes] = []

    def count(data: bytes) -> object:
        calls.append(data)
        return decode(data)

    with monkeypatch.context() as patch:  # how many parses a fast read takes
        patch.setattr(fast_path, "decode_messages", count)
        path = tmp_path / "result.json"
        path.write_bytes(_telegram_layout(chat))
        list(ExportStream(path))
    refused = 6 if where == "middle" else len(calls) - 1
    seen = iter(range(len(calls) * 2))

    def refuse(data: bytes) -> object:  # a decode error, as in a broken message
        if next(seen) == refused:
            raise msgspec.DecodeError("refused")
        return decode(data)

    monkeypatch.setattr(fast_path, "decode_messages", refuse)
    path = tmp_path / "result.json"
    path.write_bytes(_telegram_layout(chat))

    def progress() -> tuple[list, int]:
        reported: list[int] = []
        messages = [raw for _, raw in ExportStream(path, on_bytes=reported.append)]
        return messages, sum(reported)

    fast = progress()
    monkeypatch.setattr(ExportStream, "_fast", _not_fast)
    assert progress() == fast
    assert len(fast[0]) == 300
    assert fast[1] == path.stat().st_size - 3  # as before the fast path: the first 3 bytes are read unreported


@pytest.mark.parametrize("layout", ["telegram", "minified"])
def test_messages_longer_than_a_chunk_and_many_small_chats_take_the_fast_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str):
    monkeypatch.setattr(telegram_export_module, "_CHUNK", 4096)
    long_texts = [msg(index, f"user{index % 2}", "длинный текст " * (index * 900)) for index in range(1, 5)]
    chats = [{"name": f"Чат {index}", "type": "personal_chat", "id": index,
              "messages": [msg(number, "user1", f"привет {number}") for number in range(1, index % 4 + 1)]}
             for index in range(200)]
    chats.append({"name": "Длинный", "type": "private_group", "id": 500, "messages": long_texts})
    path = tmp_path / "result.json"
    path.write_bytes(EXPORT_LAYOUTS[layout](account(*chats)))
    expected = _read_with_ijson(path, monkeypatch)
    _forbid_ijson(monkeypatch)
    pairs, sha256 = _read(path)
    assert (pairs, sha256) == expected
    assert len(pairs) == sum(index % 4 for index in range(200)) + 4


def test_falling_back_in_the_middle_of_a_chat_keeps_it_one_chat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(telegram_export_module, "_CHUNK", 4096)
    path = tmp_path / "result.json"
    path.write_bytes(LAYOUTS["account"](_generated_chat(300)))
    decode = fast_path.decode_messages

    def refuse_the_middle(data: bytes) -> object:  # the batch with message 150 of chat 42
        if b'"id": 150,' in data:
            raise msgspec.DecodeError("refused")
        return decode(data)

    monkeypatch.setattr(fast_path, "decode_messages", refuse_the_middle)
    pairs = list(ExportStream(path))
    starts = [chat.id for (chat, _), previous in zip(pairs, [None, *pairs], strict=False)
              if previous is None or chat is not previous[0]]
    assert starts == [7, 42, 7]  # the reader starts a chat on each new chat object: the fall-back made none
    assert [raw.id for chat, raw in pairs if chat.id == 42] == list(range(1, 301))


def test_one_message_longer_than_the_pending_bound_stays_fast_and_many_uncuttable_ones_fall_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(telegram_export_module, "_CHUNK", 4096)
    monkeypatch.setattr(fast_path, "_MAX_PENDING", 16384)
    messages = [msg(1, "user1", "привет"), msg(2, "user2", "очень длинный текст " * 20_000), msg(3, "user1", "ок")]
    long_one = tmp_path / "long.json"
    long_one.write_bytes(EXPORT_LAYOUTS["telegram"]({"name": "Чат", "type": "personal_chat", "id": 1,
                                                     "messages": messages}))
    expected = _read_with_ijson(long_one, monkeypatch)
    with monkeypatch.context() as patch:
        _forbid_ijson(patch)
        assert _read(long_one) == expected
    # Every separator different (1, 2, 3... spaces): no learned cut ever parses, so past the bound ijson reads it.
    small = [json.dumps(msg(index, "user1", f"текст {index} " * 50), ensure_ascii=False) for index in range(1, 200)]
    body = "".join(("," + " " * index if index else "") + text for index, text in enumerate(small))
    uncuttable = tmp_path / "uncuttable.json"
    uncuttable.write_text('{"name": "Чат", "type": "personal_chat", "id": 1, "messages": [' + body + "]}",
                          encoding="utf-8")
    fell_back = []
    real_ijson = ExportStream._ijson
    monkeypatch.setattr(ExportStream, "_ijson", lambda *args: fell_back.append(1) or real_ijson(*args))
    pairs, _ = _read(uncuttable)
    assert fell_back and [raw.id for _, raw in pairs] == list(range(1, 200))


def test_odd_items_decode_alike_on_both_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The typed decoding keeps what the normaliser tells apart: items that are not objects, null against an
    absent `from`, integer ids, entity lists, a null `forwarded_from`; the ijson fallback gives the same."""
    absent_from = msg(4, "user2", "без имени")
    del absent_from["from"]
    messages = [msg(1, "user1", "привет"), 5, "строка", [1, {"id": 2}], None, msg(2, None, "удалён"),
                msg(3, 7, ["жирный ", {"type": "bold", "text": "текст"}], forwarded_from=None), absent_from]
    path = tmp_path / "result.json"
    path.write_bytes(EXPORT_LAYOUTS["lines"]({"name": "Чат", "type": "personal_chat", "id": 1,
                                               "messages": messages}))
    expected = _read_with_ijson(path, monkeypatch)
    _forbid_ijson(monkeypatch)
    pairs, sha256 = _read(path)
    assert (pairs, sha256) == expected
    raws = [raw for _, raw in pairs]
    assert raws == [raw_item(message) for message in messages]
    assert raws[1:5] == [5, "строка", [1, {"id": 2}], None]
    assert (raws[5].from_, raws[7].from_) == (None, UNSET)  # a deleted account, and no `from` at all
    assert raws[6].forwarded_from is None and raws[6].from_id == 7
