"""Reading exports: layouts, the `\\xNN` quirk, BOM, text entities, authors, skip rules."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sobesednik.data import telegram_export as telegram_export_module
from sobesednik.data.raw_message import raw_item
from sobesednik.data.telegram_export import ExportStream, normalise_message, normalise_whitespace, visible_text

from .exports import msg, service


def _normalise(raw: object, **flags: bool) -> object:
    """`normalise_message` of a message written as a dict, decoded as the reader decodes it."""
    options = {"mask_pii": False, "keep_forwarded": False, "keep_via_bot": False, **flags}
    return normalise_message(raw_item(raw), Counter(), last_date=0, **options)


def test_x_escapes_are_rewritten_even_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(telegram_export_module, "_CHUNK", 3)  # every escape straddles a boundary somewhere
    path = tmp_path / "result.json"
    # Telegram's invalid `\x0b`, an escaped backslash before "x41" (literal text), and a normal escape.
    path.write_bytes(b'{"name": "c", "id": 1, "messages": [{"id": 1, "type": "message", '
                     b'"text": "a\\x0bb \\\\x41 \\\\\\x0cc \\u0442"}]}')
    [(_, raw)] = list(ExportStream(path))
    assert raw.text == "a\x0bb \\x41 \\\x0cc т"


def test_bom_is_skipped_and_sha256_covers_the_raw_file(tmp_path: Path):
    path = tmp_path / "result.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"name": "c", "id": 7, "messages": [msg(1, "user1", "hi")]}).encode())
    stream = ExportStream(path)
    [(chat, raw)] = list(stream)
    assert (chat.name, chat.id, raw.text) == ("c", 7, "hi")
    import hashlib

    assert stream.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_account_export_yields_messages_with_their_chat(tmp_path: Path):
    path = tmp_path / "result.json"
    account = {"about": "x", "personal_information": {"first_name": "Я"},
               "chats": {"about": "y", "list": [
                   {"name": "Дача", "type": "private_group", "id": 1, "messages": [msg(1, "user1", "раз")]},
                   {"name": "Работа", "type": "private_supergroup", "id": 2,
                    "messages": [msg(1, "user2", "два"), msg(2, "user3", [{"type": "bold", "text": "три"}])]}]},
               "left_chats": {"list": [{"name": "Старый", "id": 3, "messages": [msg(1, "user4", "нет")]}]}}
    path.write_text(json.dumps(account, ensure_ascii=False), encoding="utf-8")
    stream = ExportStream(path)
    pairs = [(chat.name, chat.id, raw.text) for chat, raw in stream]
    assert stream.layout == "account"
    assert pairs == [("Дача", 1, "раз"), ("Работа", 2, "два"), ("Работа", 2, [{"type": "bold", "text": "три"}])]


def test_visible_text_keeps_every_entity_and_counts_odd_types():
    counters: Counter[str] = Counter()
    text = ["Смотри ", {"type": "link", "text": "https://ya.ru"}, " и ", {"type": "mention", "text": "@ivan"},
            {"type": "code", "text": " x = 1 "}, {"type": "custom_emoji", "text": "🙂", "document_id": 5}, 17]
    assert visible_text(text, counters, mask_pii=False) == "Смотри https://ya.ru и @ivan x = 1 🙂"
    assert visible_text({"weird": True}, counters, mask_pii=False) == ""
    assert counters["text_not_string_or_list"] == 1


def test_whitespace_is_normalised_and_blank_lines_dropped():
    assert normalise_whitespace("  привет \u00a0  мир\t ") == "привет мир"
    assert normalise_whitespace("раз  \r\n\r\n   два \n\n") == "раз\nдва"


# Every kind of whitespace `str.split` and `str.splitlines` know, among short words.
_spaced = st.lists(st.sampled_from(["ab", "в", "ё😀", " ", "  ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c",
                                    "\x1c", "\x85", "\u2028", "\u00a0", "\u3000"]), max_size=30).map("".join)


@given(text=_spaced, keep=st.integers(1, 40))
def test_the_cut_while_reading_is_the_start_of_the_whole_normalised_text(text, keep):
    assert normalise_whitespace(text, keep) == normalise_whitespace(text)[:keep]


@given(text=_spaced)
def test_a_message_text_is_normalised_as_normalise_whitespace_does(text):
    message = _normalise(msg(1, "user1", text))
    assert (message if isinstance(message, str) else message.text) in ("empty_text", normalise_whitespace(text))


def test_every_whitespace_character_but_the_space_is_unprintable():
    """What lets `normalise_message` take a printable text without a double, leading or trailing space as is."""
    whitespace = [chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()]
    assert [char for char in whitespace if char.isprintable()] == [" "]


@pytest.mark.parametrize(("raw", "reason"), [
    (service(1), "service"),
    (msg(1, "user1", "", photo="(File not included)"), "media_only"),
    (msg(1, "user1", "", media_type="sticker", sticker_emoji="😀"), "media_only"),
    (msg(1, "user1", "   "), "empty_text"),
    (msg(1, "user1", "новость", forwarded_from=None), "forwarded"),  # hidden sender: still forwarded
    (msg(1, "user1", "гифка", via_bot="@gif"), "via_bot"),
    ({**msg(1, "user1", "без id"), "id": "x"}, "message_without_id"),
    ([1, 2], "not_a_message_object"),
])
def test_skip_rules_name_their_reason(raw: object, reason: str):
    assert _normalise(raw) == reason  # type: ignore[arg-type]


def test_keep_flags_keep_forwards_and_via_bot():
    assert _normalise(msg(1, "user1", "новость", forwarded_from="Канал"), keep_forwarded=True).text == "новость"
    assert _normalise(msg(1, "user1", "гифка", via_bot="@gif"), keep_via_bot=True).text == "гифка"


def test_authors_come_from_from_id_integer_ids_and_deleted_accounts():
    assert _normalise(msg(1, "user5", "a")).author == "user5"
    assert _normalise(msg(1, 5, "a")).author == "user5"  # older exports: integer from_id
    assert _normalise(msg(1, None, "a")).author == "deleted"
    assert _normalise(msg(1, "user7", "a", reply_to_message_id=3)).reply_to == 3


def test_date_falls_back_to_iso_date_then_to_the_previous_message():
    raw = msg(1, "user1", "a")
    del raw["date_unixtime"]
    assert _normalise(raw).date > 0
    del raw["date"]
    assert normalise_message(raw_item(raw), Counter(), mask_pii=False, keep_forwarded=False, keep_via_bot=False,
                             last_date=123).date == 123
