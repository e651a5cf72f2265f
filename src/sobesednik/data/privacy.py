"""PII masking for `prepare --mask-pii`: phones, e-mails, card numbers, @usernames and links to people.

    mask_text("пиши на ivan@mail.ru или +7 912 345-67-89")  # 'пиши на <EMAIL> или <PHONE>'

Telegram already marks most of these as entities (`phone`, `email`, `bank_card`, `mention`, `mention_name`);
`ENTITY_PLACEHOLDERS` replaces those whole, and the regular expressions catch what people typed without
Telegram recognising it. Each kind becomes a typed placeholder so the model learns *that* a phone goes here,
never whose. A cheap character test skips the regexes for the many messages that cannot hold PII.
"""

from __future__ import annotations

import re

PLACEHOLDERS = ("<PHONE>", "<EMAIL>", "<CARD>", "<USERNAME>", "<PROFILE_LINK>")

# Telegram entity type → placeholder for the entity's whole text.
ENTITY_PLACEHOLDERS: dict[str, str] = {
    "phone": "<PHONE>",
    "email": "<EMAIL>",
    "bank_card": "<CARD>",
    "mention": "<USERNAME>",
    "mention_name": "<USERNAME>",  # a mention of someone without a username: their display name
}

# Order matters: links to people before @usernames (t.me/ivan must not become t.me/<USERNAME>), cards
# before phones (a 16-digit card is also a long digit run).
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?:https?://)?(?:t\.me|telegram\.me|vk\.com|instagram\.com|facebook\.com)/[\w.]+"
                r"|tg://user\?id=\d+", re.IGNORECASE), "<PROFILE_LINK>"),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-zА-Яа-я]{2,}"), "<EMAIL>"),
    (re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}\b"), "<USERNAME>"),
    (re.compile(r"(?<!\d)(?:\d{4}[ -]?){3}\d{4}(?:[ -]?\d{1,3})?(?!\d)"), "<CARD>"),
    # +7 / 8 and ten digits in the usual groupings, or any international number of 10-14 digits.
    (re.compile(r"(?<![\w+])(?:\+7|8)[\s(-]*\d{3}[\s)-]*\d{3}[\s-]*\d{2}[\s-]*\d{2}(?!\d)"
                r"|(?<![\w+])\+\d[\d\s()-]{8,16}\d(?!\d)"), "<PHONE>"),
]


def _may_hold_pii(text: str) -> bool:
    # Every pattern needs an "@", a "/" or a run of digits; most chat lines have none of these.
    return "@" in text or "/" in text or sum(ch.isdigit() for ch in text) >= 7


def mask_text(text: str) -> str:
    """`text` with every phone, e-mail, card number, @username and profile link replaced by its placeholder."""
    if not _may_hold_pii(text):
        return text
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text


def only_placeholders(text: str) -> bool:
    """True when nothing but placeholders, spaces and punctuation remains: no words of the author's own."""
    for placeholder in PLACEHOLDERS:
        text = text.replace(placeholder, "")
    return not any(ch.isalnum() for ch in text)
