"""PII masking: typed placeholders for phones, e-mails, cards, usernames and links; pseudonyms for names."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sobesednik.data.prepare import prepare
from sobesednik.data.privacy import NameMasker, mask_text, only_placeholders
from sobesednik.data.settings import PrepareSettings
from sobesednik.data.telegram_export import visible_text
from sobesednik.errors import ConfigError


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


# --- personal names ------------------------------------------------------------------------------------------------
# Every form of the sample's participants' first names that its messages use, written out by hand (not derived
# from the masker's own tables): the first word of each `from` field must be among them.
SAMPLE_FIRST_NAME_FORMS = {
    "Дима": "дима диму диме димы димой дим димочка димон дмитрий",
    "Серёга": "серёга серёгу серёги серёге серёгой серёжа серёжу серёже серёжи серёж сергей сергея серега сережа",
    "Оля": "оля олю оле оли олей оль ольга",
    "Ирина": "ирина ирине ирину ирины ириной ира иру ире иры ирой ирааа",
    "Костя": "костя костю косте кости костей костян",
    "Аня": "аня аню ане ани аней ань анна",
}


def _words(text: str) -> set[str]:
    return {word.lower() for word in re.findall(r"[А-ЯЁа-яё]+", text)}


def _dataset_texts(out: Path) -> list[str]:
    texts = []
    for name in ("train.jsonl", "valid.jsonl", "test.jsonl"):
        for line in (out / name).read_text(encoding="utf-8").splitlines():
            texts += [message["content"] for message in json.loads(line)["messages"]]
    return texts


@pytest.fixture(scope="module")
def masked_sample(tmp_path_factory: pytest.TempPathFactory, sample_export: Path) -> Path:
    out = tmp_path_factory.mktemp("masked")
    prepare(PrepareSettings(exports=[sample_export], out=out, mask_pii=True, progress=False, _env_file=None))
    return out


def test_no_participant_first_name_remains_in_the_sample_dataset(sample_export: Path, masked_sample: Path):
    export = json.loads(sample_export.read_text(encoding="utf-8"))
    first_names = {message["from"].split()[0] for message in export["messages"] if message.get("from")}
    assert first_names == set(SAMPLE_FIRST_NAME_FORMS)
    forms = {form for spelled in SAMPLE_FIRST_NAME_FORMS.values() for form in spelled.split()}
    original = set().union(*(_words(visible_text(m.get("text", ""), Counter(), mask_pii=False))
                             for m in export["messages"]))
    assert len(forms & original) >= 20  # the sample really mentions its people, in many forms
    left = {word for text in _dataset_texts(masked_sample) for word in _words(text)} & forms
    assert not left
    masked = json.loads((masked_sample / "stats.json").read_text(encoding="utf-8"))["masked"]
    assert masked["first_name"] >= 80 and masked["username"] >= 1


def test_one_person_gets_one_pseudonym_in_every_split(sample_export: Path, masked_sample: Path):
    # Messages that open with "Дима, ..." in the export: their first word in the dataset, across all splits.
    export = json.loads(sample_export.read_text(encoding="utf-8"))
    tails = {text.split(", ", 1)[1] for m in export["messages"] if type(text := m.get("text")) is str
             and text.startswith("Дима, ")}
    seen = {line.split(", ", 1)[0] for text in _dataset_texts(masked_sample) for line in text.split("\n")
            if ", " in line and line.split(", ", 1)[1] in tails}
    assert len(tails) >= 5 and len(seen) == 1 and seen != {"Дима"}


def test_inflected_and_pet_forms_map_to_one_person_in_the_right_case():
    import pymorphy3

    masker = NameMasker(["Дмитрий Соколов", "Ольга Иванова"])
    masked = masker.mask("Дима пришёл. Скажи Диме и Димону, что с Димой и Олей всё ок. Дим, где Соколов?")
    words = masked.replace(".", "").replace(",", "").replace("?", "").split()
    morph = pymorphy3.MorphAnalyzer()
    dima, dime, dimonu, dimoy, olyey = words[0], words[3], words[5], words[8], words[10]
    lemmas = {next(p.normal_form for p in morph.parse(word) if "Name" in p.tag) for word in (dima, dime, dimonu, dimoy)}
    assert len(lemmas) == 1 and not {"дима", "дмитрий"} & lemmas
    assert "datv" in next(p for p in morph.parse(dime) if "Name" in p.tag).tag
    assert "datv" in next(p for p in morph.parse(dimonu) if "Name" in p.tag).tag
    assert "ablt" in next(p for p in morph.parse(dimoy) if "Name" in p.tag).tag
    olya = next(p for p in morph.parse(olyey) if "Name" in p.tag).tag
    assert "femn" in olya and "ablt" in olya
    assert "Соколов" not in masked and "Дим," not in masked
    assert masker.counts == {"first_name": 6, "surname": 1}


@pytest.mark.parametrize("text", [
    "роман интересный, вера в людей вернулась",
    "лол, Питер красивый",
    "серый кот спит у костра",
    "звони <PHONE> или пиши <EMAIL>",
])
def test_everyday_words_that_are_also_names_stay(text: str):
    assert NameMasker(["Серёга Морозов", "Костя Орлов"]).mask(text) == text


def test_a_participant_pet_name_that_is_a_word_is_masked_only_with_a_capital():
    masker = NameMasker(["Костя Орлов"])
    assert masker.mask("кость болит") == "кость болит"
    assert "Кость" not in masker.mask("Кость, ты где?")


def test_missing_morphology_package_is_one_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pymorphy3", None)
    with pytest.raises(ConfigError, match=r"pip install 'sobesednik\[privacy\]'"):
        NameMasker(["Дима"])


def test_prepare_without_masking_never_imports_the_morphology(sample_export: Path, tmp_path: Path):
    code = ("import sys; from pathlib import Path; from sobesednik.data.prepare import prepare; "
            "from sobesednik.data.settings import PrepareSettings; "
            f"prepare(PrepareSettings(exports=[Path({str(sample_export)!r})], out=Path({str(tmp_path)!r}), "
            "progress=False, _env_file=None)); print('pymorphy3' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.stdout.strip() == "False"
