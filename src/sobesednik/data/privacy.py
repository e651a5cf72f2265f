"""PII masking for `prepare --mask-pii`: phones, e-mails, card numbers, @usernames, links to people, and names.

    mask_text("пиши на ivan@mail.ru или +7 912 345-67-89")  # 'пиши на <EMAIL> или <PHONE>'
    NameMasker(["Дима Соколов"]).mask("скажи Диме")         # 'скажи Мише'

Telegram already marks most of these as entities (`phone`, `email`, `bank_card`, `mention`, `mention_name`);
`ENTITY_PLACEHOLDERS` replaces those whole, and the regular expressions catch what people typed without
Telegram recognising it. Each kind becomes a typed placeholder so the model learns *that* a phone goes here,
never whose. A cheap character test skips the regexes for the many messages that cannot hold PII.

Names need the whole export read first (its authors seed the matcher), so `prepare` masks them while it writes
the dataset, with one `NameMasker` for all splits; pymorphy3 (the `privacy` extra) is imported only then.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from sobesednik.errors import ConfigError

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


# --- Personal names ----------------------------------------------------------------------------------------------
# Names are replaced by *other names*, not by `<PERSON_1>` tags: the model is trained on this text and its replies
# are read by people, so a tag would teach it to write "<PERSON_1>, привет" (and cost a dozen BPE pieces), while
# a pseudonym keeps the sentence Russian. The pseudonym takes the original's gender, case and number ("Диме" →
# "Мише", "Ольгой" → "Мариной"), its register (a diminutive stays a diminutive: "Димон" → "Миша", "Дмитрий" →
# "Михаил") and its capitalisation, so agreement ("Оля пришла") still holds. One person is one pseudonym across
# the whole dataset: the key is the canonical full name (Дима, Димон, Диме → дмитрий), so every split agrees.

# Canonical full name → the short and pet forms people write; a participant's "Дима" seeds all of these.
# pymorphy3 knows most of them as names but not which full name they belong to.
NICKNAMES: dict[str, tuple[str, ...]] = {
    "александр": ("саша", "саня", "шура", "сашка", "санёк", "санек", "сашок", "алекс"),
    "александра": ("саша", "сашенька", "шура", "сашка"),
    "алексей": ("лёша", "леша", "алёша", "алеша", "лёха", "леха", "лёшка", "лешка"),
    "анастасия": ("настя", "настенька", "настюша", "настька", "ася"),
    "анна": ("аня", "анечка", "анька", "анюта", "нюра", "нюша", "аннушка"),
    "андрей": ("андрюша", "андрюха", "андрейка"),
    "антон": ("антоша", "тоша", "антоха"),
    "владимир": ("володя", "вова", "вован", "вовка", "вовчик"),
    "дмитрий": ("дима", "димон", "димка", "димочка", "димас", "димыч", "митя", "митька"),
    "евгений": ("женя", "женёк", "женек", "жека", "женька"),
    "евгения": ("женя", "женечка", "женька"),
    "екатерина": ("катя", "катюша", "катенька", "катька"),
    "елена": ("лена", "леночка", "ленка"),
    "иван": ("ваня", "ванька", "ванёк", "ванек", "ванюша"),
    "ирина": ("ира", "ирка", "ирочка", "иришка"),
    "константин": ("костя", "костик", "костян", "костюха"),
    "максим": ("макс", "максик"),
    "мария": ("маша", "машенька", "машка", "маня", "муся"),
    "михаил": ("миша", "мишка", "мишаня", "миха"),
    "наталья": ("наташа", "наташка", "ната", "натали"),
    "николай": ("коля", "колян", "колька", "николаша"),
    "ольга": ("оля", "олечка", "оленька", "олька", "олюшка"),
    "павел": ("паша", "пашка", "павлик"),
    "светлана": ("света", "светка", "светик", "светочка"),
    "сергей": ("серёжа", "сережа", "серёга", "серега", "серёжка", "сережка", "серый", "серж"),
    "татьяна": ("таня", "танюша", "танька", "танечка"),
    "юлия": ("юля", "юлечка", "юлька"),
}

# Pseudonyms by gender: (full, short). Chosen to be common, unambiguous as words, and with regular declension.
_PSEUDONYMS = {
    "masc": [("Михаил", "Миша"), ("Олег", "Олег"), ("Игорь", "Игорь"), ("Виталий", "Виталик"),
             ("Григорий", "Гриша"), ("Борис", "Боря"), ("Тимофей", "Тима"), ("Аркадий", "Аркаша"),
             ("Степан", "Стёпа"), ("Фёдор", "Федя"), ("Егор", "Егор"), ("Василий", "Вася")],
    "femn": [("Марина", "Марина"), ("Светлана", "Света"), ("Галина", "Галя"), ("Полина", "Поля"),
             ("Варвара", "Варя"), ("Зинаида", "Зина"), ("Кира", "Кира"), ("Дарья", "Даша"),
             ("Тамара", "Тома"), ("Вероника", "Ника"), ("Алиса", "Алиса"), ("Нина", "Нина")],
}
_PSEUDO_SURNAMES = ["Петров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Фёдоров", "Никитин", "Зайцев"]
_PSEUDO_PATRONYMICS = {"masc": ["Андреевич", "Петрович", "Ильич"], "femn": ["Андреевна", "Петровна", "Ильинична"]}

_KEY_KIND = {"name": "first_name", "surn": "surname", "patr": "patronymic"}
_WORD = re.compile(r"[А-ЯЁа-яё]+")
_ELONGATED = re.compile(r"([а-яё])\1{2,}")  # "Ирааа" is "Ира" said longer
_PLACEHOLDER_KINDS = {placeholder: placeholder.strip("<>").lower() for placeholder in PLACEHOLDERS}


def _load_morphology() -> Any:
    try:
        import pymorphy3  # lazy: ~0.2 s and 20 MB of dictionaries that `prepare` without masking never needs
    except ImportError:
        raise ConfigError(
            "--mask-pii masks personal names with pymorphy3, which is not installed: "
            "pip install 'sobesednik[privacy]' (or run without --mask-pii)") from None
    return pymorphy3.MorphAnalyzer()


@dataclass(frozen=True)
class _Mention:
    key: str  # the person ("name:дмитрий", "surn:соколов", "patr:сергеевич")
    kind: str  # "first_name" | "surname" | "patronymic"
    gender: str  # "masc" | "femn"
    case: str
    number: str
    short: bool  # a short or pet form (Дима), not the full name (Дмитрий)


class NameMasker:
    """Replaces personal names with per-person pseudonyms; `counts` says how many of each kind were masked.

    `authors` are the display names of the export's `from` fields: their first names, with every nickname of
    the same full name, and their surnames match in any case and form even where the dictionary alone would
    read them as words ("Диму", "Ира"). Other names are found by pymorphy3's dictionary tags.
    """

    def __init__(self, authors: Iterable[str] = ()) -> None:
        self.morph = _load_morphology()
        self.counts: Counter[str] = Counter()
        # A short form of two full names (Саша, Женя) goes to the first, the masculine one: they decline alike.
        self._nickname_of: dict[str, str] = {}
        for full, shorts in NICKNAMES.items():
            for short in shorts:
                self._nickname_of.setdefault(short, full)
        self._persons: dict[str, tuple[int, str]] = {}  # key → (index within its gender, gender)
        self._seeded: dict[str, str] = {}  # lower-case word form of a participant's name → person key
        self._vocatives: set[str] = set()
        self._genders: dict[str, str] = {}  # participant's person key → "masc" | "femn"
        self._reserved: set[str] = set()  # canonical names of the participants: never handed out as pseudonyms
        for display in sorted(set(authors)):
            self._seed(display)
        self._lines: dict[str, str] = {}  # a message line → the line masked
        self._words: dict[str, str | None] = {}  # a word as written → its pseudonym, or None for no name
        self._word_kinds: dict[str, str | None] = {}

    # -- seeding from the export's authors ----------------------------------------------------------------------
    def _canonical(self, normal: str) -> str:
        return self._nickname_of.get(normal.replace("ё", "е"), self._nickname_of.get(normal, normal))

    def _seed(self, display: str) -> None:
        for word in _WORD.findall(display):
            lower = word.lower()
            if len(lower) < 2:
                continue
            if lower in self._nickname_of or lower in NICKNAMES:
                self._seed_first_name(self._canonical(lower))
                continue
            parses = [parse for parse in self.morph.parse(lower) if parse.is_known]
            name = next((parse for parse in parses if "Name" in parse.tag), None)
            surname = next((parse for parse in parses if "Surn" in parse.tag), None)
            if name is not None and (surname is None or name.score >= surname.score):
                self._seed_first_name(self._canonical(name.normal_form))
            elif surname is not None:
                key = f"surn:{surname.normal_form}"
                for form in surname.lexeme:
                    self._seeded.setdefault(form.word.replace("ё", "е"), key)
            elif not parses:  # a word the dictionary does not know: most likely a rare surname
                self._seeded.setdefault(lower.replace("ё", "е"), f"surn:{lower}")

    def _seed_first_name(self, canonical: str) -> None:
        self._reserved.add(canonical)
        key = f"name:{canonical}"
        # The person's gender, so that a form the dictionary only guesses ("Димону" could be a Димона's) keeps it.
        full = next((parse for parse in self.morph.parse(canonical) if "Name" in parse.tag), None)
        if full is not None:
            self._genders[key] = _gender(full)
        for variant in (canonical, *NICKNAMES.get(canonical, ())):
            forms = {variant}
            for parse in self.morph.parse(variant):
                # the predictor's guesses too: "Димон" is in no dictionary, but declines like one ("Димону")
                if "Name" in parse.tag and parse.normal_form == variant:
                    forms.update(form.word for form in parse.lexeme)
            if variant[-1] in "ая" and len(variant) > 3:
                vocative = variant[:-1].replace("ё", "е")  # the spoken vocative: "Дим", "Оль", "Серёж"
                self._vocatives.add(vocative)
                forms.add(vocative)
            for form in forms:
                self._seeded.setdefault(form.replace("ё", "е"), key)

    # -- finding names -------------------------------------------------------------------------------------------
    def _mention(self, word: str) -> _Mention | None:
        lower = _ELONGATED.sub(r"\1", word.lower())
        if len(lower) < 2:
            return None
        parses = self.morph.parse(lower)
        named = [parse for parse in parses if parse.is_known and _kind_tag(parse) is not None]
        key = self._seeded.get(lower.replace("ё", "е"))
        if key is not None:
            other = max((parse.score for parse in parses if parse.is_known and _kind_tag(parse) is None), default=0)
            best = max((parse.score for parse in named), default=0)
            # "кость", "серый": a participant's pet name that is far more often an everyday word counts only
            # when written with a capital.
            if other > best and not word[0].isupper():
                return None
            wanted = "Name" if key.startswith("name:") else "Surn"
            gender = self._genders.get(key)
            parse = next((parse for parse in parses if _kind_tag(parse) == wanted
                          and (gender is None or _gender(parse) == gender)), None)
        else:
            known = [parse for parse in parses if parse.is_known]
            if len(lower) < 3 or not known or _kind_tag(known[0]) is None:
                return None  # the likeliest reading must be a name: "Роман" the book, "вера" the faith stay
            parse = known[0]
            if parse.tag.number == "plur":
                return None  # names are rarely plural, and "лол" is Лола's genitive plural
            # "Питер", "Спартак": a city or a club as often as a person (measured on the sample: 0.3 keeps "Лена").
            if sum(other.score for other in known if {"Geox", "Orgn"} & other.tag.grammemes) >= 0.3:
                return None
            tag = _kind_tag(parse)
            if tag == "Surn" and not word[0].isupper():
                return None  # lower-case surnames are mostly words ("морозов" is also "of frosts")
            key = {"Name": "name:", "Surn": "surn:", "Patr": "patr:"}[tag] + (
                self._canonical(parse.normal_form) if tag == "Name" else parse.normal_form)
        kind = _KEY_KIND[key.split(":", 1)[0]]
        canonical = key.split(":", 1)[1]
        if parse is None:
            return _Mention(key, kind, "masc", "nomn", "sing", short=lower != canonical)
        tag = parse.tag
        gender = _gender(parse)
        if lower.replace("ё", "е") in self._vocatives:
            return _Mention(key, kind, gender, "voct", "sing", short=True)
        return _Mention(key, kind, gender, tag.case or "nomn", tag.number or "sing",
                        short=parse.normal_form.replace("ё", "е") != canonical.replace("ё", "е"))

    # -- pseudonyms ----------------------------------------------------------------------------------------------
    def _index(self, mention: _Mention) -> tuple[int, str]:
        if mention.key not in self._persons:
            group = mention.gender if mention.kind == "first_name" else mention.kind
            taken = sum(1 for _, other in self._persons.values() if other == group)
            self._persons[mention.key] = (taken, group)
        return self._persons[mention.key]

    def _pseudonym(self, mention: _Mention) -> str:
        index, _ = self._index(mention)
        if mention.kind == "first_name":
            own = mention.key.split(":", 1)[1]
            pool = [pair for pair in _PSEUDONYMS[mention.gender]
                    if pair[0].lower() not in self._reserved and pair[0].lower() != own]
            full, short = pool[index % len(pool)]
            base, wanted = (short if mention.short else full), "Name"
        elif mention.kind == "surname":
            base, wanted = _PSEUDO_SURNAMES[index % len(_PSEUDO_SURNAMES)], "Surn"
        else:
            pool = _PSEUDO_PATRONYMICS[mention.gender]
            base, wanted = pool[index % len(pool)], "Patr"
        parse = next(parse for parse in self.morph.parse(base.lower()) if wanted in parse.tag)
        grammemes = {mention.case, mention.number} | ({mention.gender} if mention.kind == "surname" else set())
        inflected = parse.inflect(grammemes) or parse.inflect({mention.case})
        if inflected is not None:
            return inflected.word
        if mention.case == "voct" and base[-1] in "ая":
            return base[:-1].lower()  # "Миш": pymorphy3 has the spoken vocative for few names
        return base.lower()

    # -- the public part -----------------------------------------------------------------------------------------
    def _replace_word(self, word: str) -> str | None:
        if word not in self._words:
            mention = self._mention(word)
            self._words[word] = None if mention is None else _match_case(self._pseudonym(mention), word)
            self._word_kinds[word] = None if mention is None else mention.kind
        return self._words[word]

    def mask(self, text: str) -> str:
        """`text` with every personal name replaced by its person's pseudonym."""
        if "\n" not in text:
            return self._mask_line(text)
        return "\n".join(self._mask_line(line) for line in text.split("\n"))

    def _mask_line(self, line: str) -> str:
        # Turns are merged runs of messages, one per line, and the same message recurs in several samples'
        # contexts: masking (and counting) once per distinct line makes `counts` the mentions in the chat.
        masked = self._lines.get(line)
        if masked is not None:
            return masked
        parts: list[str] = []
        end = 0
        for match in _WORD.finditer(line):
            replacement = self._replace_word(match.group())
            if replacement is not None:
                parts += (line[end:match.start()], replacement)
                end = match.end()
                self.counts[self._word_kinds[match.group()]] += 1
        masked = "".join(parts) + line[end:] if parts else line
        if "<" in line:
            for placeholder, kind in _PLACEHOLDER_KINDS.items():
                self.counts[kind] += line.count(placeholder)
        self._lines[line] = masked
        return masked

    def mask_sample(self, line: bytes) -> bytes:
        """One dataset JSON line with every message's text masked."""
        sample = orjson.loads(line)
        for message in sample["messages"]:
            message["content"] = self.mask(message["content"])
        return orjson.dumps(sample, option=orjson.OPT_APPEND_NEWLINE)

    def mask_speaker_line(self, line: bytes) -> bytes:
        """One `speakers.jsonl` line (`{"speaker", "text"}`) with its text masked."""
        record = orjson.loads(line)
        record["text"] = self.mask(record["text"])
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def _kind_tag(parse: Any) -> str | None:
    grammemes = parse.tag.grammemes
    return "Name" if "Name" in grammemes else "Surn" if "Surn" in grammemes else "Patr" if "Patr" in grammemes \
        else None


def _gender(parse: Any) -> str:
    return "femn" if parse.tag.gender == "femn" else "masc"  # "ms-f" (Саша, Женя) declines as masculine


def _match_case(pseudonym: str, original: str) -> str:
    if original.isupper() and len(original) > 1:
        return pseudonym.upper()
    return pseudonym.capitalize() if original[0].isupper() else pseudonym.lower()
