"""The orjson fast path for Telegram Desktop's layout gives exactly what ijson gives, and falls back to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sobesednik.data import export as export_module
from sobesednik.data.export import ExportStream
from sobesednik.errors import ExportFormatError

from .exports import msg, service


def _telegram_layout(chat: dict) -> bytes:
    """A single-chat export written like Telegram Desktop (indent 1, one message opening at `  {`)."""
    return json.dumps(chat, ensure_ascii=False, indent=1).encode()


def _generated_chat(count: int) -> dict:
    messages = []
    for index in range(1, count + 1):
        if index % 17 == 0:
            messages.append(service(index, "topic_created", title="тема"))
        elif index % 5 == 0:
            text = ["ссылка ", {"type": "link", "text": "https://example.com/x"}, {"type": "bold", "text": "}"}]
            messages.append(msg(index, f"user{index % 3}", text, reply_to_message_id=index - 1))
        else:
            messages.append(msg(index, f"user{index % 3}", "строка с \"кавычками\" и \\ и }\n  }", score=0.5))
    return {"name": "Чат", "type": "private_group", "id": 42, "messages": messages}


def _read(path: Path) -> tuple[list[tuple], str]:
    stream = ExportStream(path)
    return list(stream), stream.sha256


def _read_with_ijson(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple], str]:
    with monkeypatch.context() as patch:
        patch.setattr(export_module, "_fast_chat_messages", _not_fast)
        return _read(path)


def _not_fast(reader: object):
    raise export_module._NotFast
    yield  # a generator, like the real one


def _forbid_ijson(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object):
        raise AssertionError("the fast path fell back to ijson")

    monkeypatch.setattr(export_module.ijson, "items", refuse)


def test_sample_export_takes_the_fast_path_and_equals_ijson(sample_export: Path, monkeypatch: pytest.MonkeyPatch):
    expected = _read_with_ijson(sample_export, monkeypatch)
    _forbid_ijson(monkeypatch)
    assert _read(sample_export) == expected
    assert len(expected[0]) > 100


@pytest.mark.parametrize("chunk", [64, 1 << 20])
def test_generated_export_equals_ijson_at_any_chunk_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int):
    monkeypatch.setattr(export_module, "_CHUNK", chunk)  # 64 bytes: cuts land mid-message and mid-escape
    path = tmp_path / "result.json"
    # A BOM and Telegram's invalid `\xNN` escapes go through the same byte-level fix-up on both paths.
    path.write_bytes(b"\xef\xbb\xbf" + _telegram_layout(_generated_chat(300)).replace(b"\\\\ ", b"\\x0b "))
    expected = _read_with_ijson(path, monkeypatch)
    _forbid_ijson(monkeypatch)
    assert _read(path) == expected
    assert expected[0][0][1]["text"] == 'строка с "кавычками" и \x0b и }\n  }'


@pytest.mark.parametrize("layout", ["compact", "indent 2", "trailing key"])
def test_other_layouts_fall_back_to_ijson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str):
    chat = _generated_chat(40)
    if layout == "compact":
        data = json.dumps(chat, ensure_ascii=False).encode()
    elif layout == "indent 2":
        data = json.dumps(chat, ensure_ascii=False, indent=2).encode()
    else:  # fast path all the way, then a key after `messages`
        data = _telegram_layout({**chat, "extra": {"a": [1, 2]}})
    path = tmp_path / "result.json"
    path.write_bytes(data)
    assert _read(path) == _read_with_ijson(path, monkeypatch)
    assert len(_read(path)[0]) == 40


@pytest.mark.parametrize("cut", ["truncated", "corrupt message", "garbage after the end"])
def test_broken_files_fail_with_the_ijson_error_and_no_message_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     cut: str):
    monkeypatch.setattr(export_module, "_CHUNK", 4096)  # several fast-path batches before the damage
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
                ids.append(raw["id"])
        return ids, str(error.value)

    fast_ids, fast_error = collect()
    monkeypatch.setattr(export_module, "_fast_chat_messages", _not_fast)
    assert (fast_ids, fast_error) == collect()
    assert fast_ids == list(range(1, len(fast_ids) + 1))
    if cut == "truncated":
        assert "is truncated" in fast_error


@pytest.mark.parametrize("where", ["middle", "end"])
def test_progress_counts_each_byte_once_when_falling_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          where: str):
    monkeypatch.setattr(export_module, "_CHUNK", 4096)
    chat = _generated_chat(300)
    if where == "middle":  # orjson refuses its 6th batch, as it would an integer over 64 bits
        calls = iter(range(1000))
        loads = export_module.orjson.loads

        def refuse_sixth(data: bytes) -> object:
            if next(calls) == 6:
                raise export_module.orjson.JSONDecodeError("refused", "", 0)
            return loads(data)

        monkeypatch.setattr(export_module.orjson, "loads", refuse_sixth)
    else:
        chat["extra"] = 1  # a key after `messages`: ijson takes over at the very end
    path = tmp_path / "result.json"
    path.write_bytes(_telegram_layout(chat))

    def progress() -> tuple[list, int]:
        reported: list[int] = []
        messages = [raw for _, raw in ExportStream(path, on_bytes=reported.append)]
        return messages, sum(reported)

    fast = progress()
    monkeypatch.setattr(export_module, "_fast_chat_messages", _not_fast)
    assert progress() == fast
    assert len(fast[0]) == 300
    assert fast[1] == path.stat().st_size - 3  # as before the fast path: the first 3 bytes are read unreported
