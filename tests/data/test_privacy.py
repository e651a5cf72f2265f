"""PII masking: typed placeholders for phones, e-mails, cards, usernames and profile links."""

from __future__ import annotations

from collections import Counter

import pytest

from sobesednik.data.privacy import mask_text, only_placeholders
from sobesednik.data.telegram_export import visible_text


@pytest.mark.parametrize(("text", "masked"), [
    ("звони +7 (912) 345-67-89 вечером", "звони <PHONE> вечером"),
    ("мой 89123456789", "мой <PHONE>"),
    ("пиши на ivan.petrov@mail.ru", "пиши на <EMAIL>"),
    ("карта 4276 1234 5678 9012", "карта <CARD>"),
    ("спроси @ivan_petrov", "спроси <USERNAME>"),
    ("профиль t.me/ivan_petrov и https://vk.com/id123", "профиль <PROFILE_LINK> и <PROFILE_LINK>"),
    ("tg://user?id=12345", "<PROFILE_LINK>"),
    ("в 2024 году 15 человек", "в 2024 году 15 человек"),
    ("сайт https://dacha.ru/plan", "сайт https://dacha.ru/plan"),
])
def test_mask_text(text: str, masked: str):
    assert mask_text(text) == masked


def test_entities_marked_by_telegram_are_masked_whole():
    text = ["напиши ", {"type": "mention_name", "text": "Ивану Петрову", "user_id": 5}, " или ",
            {"type": "phone", "text": "8 912 345 67 89"}]
    assert visible_text(text, Counter(), mask_pii=True) == "напиши <USERNAME> или <PHONE>"
    assert visible_text(text, Counter(), mask_pii=False) == "напиши Ивану Петрову или 8 912 345 67 89"


def test_only_placeholders():
    assert only_placeholders("<PHONE> <EMAIL>!")
    assert not only_placeholders("<PHONE> звони")
