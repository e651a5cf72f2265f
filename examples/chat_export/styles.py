"""The generated months of the sample chat: four friends whose ways of writing differ measurably.

`make_sample.py` lays the hand-written first fortnight out as messages, then appends conversations built here
from templates: a topic (the dacha, the river, a birthday, the football...) fills the slots of each speaker's
templates, and a small chain of intents (ask → answer → react...) orders the turns. The styles are the point:
a persona model trained on one speaker must be told apart from the others by an authorship classifier.

- Дима (D): lowercase, no full stops, "короче", "типа", ")))"
- Ирина (I): formal, long sentences with subordinate clauses
- Серёга (S): short, "го …!!!", exclamation marks
- Оля (O): emoji after nearly every phrase

Deterministic given the `random.Random` passed in; stdlib only.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

# Slots every topic shares. Grammatical case is fixed per slot, so templates stay correct Russian.
DAYS = ["в субботу", "в воскресенье", "в пятницу вечером", "на выходных", "завтра", "в следующую субботу"]
TIMES = ["к десяти", "часов в восемь", "после обеда", "к обеду", "пораньше утром", "часам к шести"]
CLOCKS = ["7:40", "8:15", "9:05", "9:50", "10:20", "11:35", "18:10", "19:25"]

# topic -> slots: place (where to, accusative of direction), thing (accusative), activity (infinitive phrase),
# food (accusative), emoji (Оля's)
TOPICS = {
    "дача": {
        "place": ["на дачу", "к Ане на дачу", "за город"],
        "thing": ["мангал", "угли", "палатку", "удлинитель", "пледы", "гамак", "складные стулья"],
        "activity": ["пожарить шашлык", "посидеть у костра", "поиграть в бадминтон", "починить забор",
                     "покрасить беседку"],
        "food": ["шашлык", "овощи", "арбуз", "сосиски", "пирог", "лимонад"],
        "emoji": ["🏡", "🌳", "☀️", "🔥", "🍖"],
    },
    "речка": {
        "place": ["на речку", "на озеро", "на пляж у плотины"],
        "thing": ["надувной матрас", "удочки", "полотенца", "сапборд", "мяч"],
        "activity": ["искупаться", "порыбачить", "покататься на сапе", "позагорать"],
        "food": ["бутерброды", "черешню", "квас", "холодный чай"],
        "emoji": ["🏖️", "🌊", "🎣", "😎", "☀️"],
    },
    "баня": {
        "place": ["в баню", "на дачу париться"],
        "thing": ["веники", "шапки для бани", "дрова", "простыни"],
        "activity": ["натопить баню", "попариться", "нырнуть в бочку после парилки"],
        "food": ["травяной чай", "мёд", "раков", "квас"],
        "emoji": ["🧖‍♀️", "🔥", "🌿", "💦"],
    },
    "огород": {
        "place": ["на грядки", "на дачу", "в садовый центр"],
        "thing": ["рассаду", "лопату", "шланг", "семена", "удобрения", "плёнку для теплицы"],
        "activity": ["посадить помидоры", "прополоть грядки", "полить огурцы", "собрать клубнику"],
        "food": ["клубнику", "огурцы", "редиску", "кабачки"],
        "emoji": ["🌱", "🍅", "🥒", "🍓", "🌼"],
    },
    "день рождения": {
        "place": ["в кафе", "на дачу", "к Ирине"],
        "thing": ["подарок", "шарики", "свечи для торта", "открытку", "колонку"],
        "activity": ["отметить день рождения", "испечь торт", "собраться всем вместе", "спеть караоке"],
        "food": ["торт", "пиццу", "салаты", "шампанское"],
        "emoji": ["🎂", "🎉", "🥳", "🎁", "🎈"],
    },
    "кино": {
        "place": ["в кино", "в кинотеатр у метро", "на летний кинопоказ"],
        "thing": ["билеты", "попкорн", "проектор", "ноутбук"],
        "activity": ["посмотреть новый фильм", "сходить на вечерний сеанс", "устроить киновечер"],
        "food": ["попкорн", "пиццу", "чипсы", "газировку"],
        "emoji": ["🎬", "🍿", "🎥", "🤩"],
    },
    "футбол": {
        "place": ["в спорт-бар", "на стадион", "на поле за школой"],
        "thing": ["мяч", "билеты на матч", "шарф", "форму"],
        "activity": ["посмотреть матч", "погонять мяч", "сыграть в футбол", "поболеть за Спартак"],
        "food": ["чипсы", "крылышки", "пиццу", "сухарики"],
        "emoji": ["⚽", "🏟️", "🙈", "🔥"],
    },
    "поход": {
        "place": ["в поход", "в лес за грибами", "на велопрогулку"],
        "thing": ["рюкзак", "спальники", "котелок", "корзину", "велосипеды", "репеллент"],
        "activity": ["собрать грибы", "пройти по лесной тропе", "покататься на велосипедах", "переночевать в палатке"],
        "food": ["тушёнку", "гречку", "орехи", "чай в термосе"],
        "emoji": ["🌲", "🍄", "🚲", "⛺", "🌄"],
    },
    "закупка": {
        "place": ["в магазин", "на рынок", "в гипермаркет"],
        "thing": ["список покупок", "тележку", "пакеты", "сумку-холодильник"],
        "activity": ["закупиться продуктами", "съездить на рынок", "скинуться на продукты"],
        "food": ["мясо", "овощи", "хлеб", "фрукты", "воду"],
        "emoji": ["🛒", "🥦", "🍉", "🧾"],
    },
}

# speaker -> intent -> templates. Slots: {place} {thing} {activity} {food} {day} {time} {clock} {e} (an emoji).
TEMPLATES = {
    "D": {
        "ask": ["короче кто едет {place} {day}", "а типа во сколько выезжаем", "кто {thing} возьмет",
                "а {food} кто берет)))", "короче где встречаемся", "типа {activity} будем или как",
                "а мы {day} вообще едем или нет", "короче кто на машине", "кто может {thing} взять"],
        "yes": ["короче я за)))", "ну типа да могу", "я в деле)))", "норм давайте", "короче {day} я свободен",
                "ок я тогда {thing} возьму", "да норм тема)))", "короче записывайте меня", "го я за)))"],
        "no": ["короче я {day} не могу работаю", "типа не успеваю(((", "не я пас в этот раз",
               "короче у меня завал на работе", "я типа {day} занят сорян", "не получится короче((("],
        "suggest": ["короче давайте {day} {place}", "типа можно {activity})))", "а может {activity} короче",
                    "короче давайте {time}", "типа я могу {thing} взять", "а давайте {food} возьмем)))"],
        "react": [")))", "ахаха)))", "короче жиза", "типа норм", "ну вы даете)))", "ору)))", "лол)))",
                  "короче красота", "ну типа да", "жесть)))"],
        "info": ["короче я уже {thing} купил", "типа электричка в {clock} есть", "короче там дождь обещают",
                 "я типа уже на месте)))", "короче {food} я взял", "типа пробки жесть еду медленно",
                 "короче я {thing} забыл((("],
    },
    "I": {
        "ask": ["Подскажите, пожалуйста, во сколько мы планируем выезжать, чтобы я успела заранее собрать вещи?",
                "Хотела бы уточнить: кто возьмёт {thing}? Если никто не сможет, я займусь этим сама.",
                "Скажите, пожалуйста, мы всё-таки едем {place} {day} или решили перенести поездку?",
                "Прежде чем покупать {food}, давайте договоримся, сколько нас будет, чтобы не взять лишнего.",
                "Не могли бы вы напомнить, где именно мы встречаемся и к какому времени нужно подойти?"],
        "yes": ["Я согласна, {day} мне вполне подходит, только давайте заранее договоримся о времени.",
                "С удовольствием присоединюсь, тем более что давно хотела {activity}.",
                "Да, это хорошая мысль, я могу взять на себя {thing}, если никто не возражает.",
                "Поддерживаю, только предлагаю выехать {time}, чтобы не попасть в пробки на выезде из города."],
        "no": ["К сожалению, {day} я не смогу, потому что у меня запланирована важная встреча, "
               "но в следующий раз обязательно присоединюсь.",
               "Боюсь, что в этот раз не получится: мне нужно помочь родителям, и освобожусь я только поздно вечером.",
               "Мне, к сожалению, придётся пропустить, однако я с радостью помогу с подготовкой заранее."],
        "suggest": ["Предлагаю {activity} {day}: судя по прогнозу, погода должна быть хорошей, а людей будет меньше.",
                    "На мой взгляд, разумнее выехать {time}, тогда мы успеем всё подготовить без спешки.",
                    "Может быть, имеет смысл заранее составить список, кто что берёт, чтобы ничего не забыть?",
                    "Я бы предложила купить {food} заранее, потому что в местном магазине выбор довольно скромный."],
        "react": ["Это действительно замечательная новость, я очень рада за всех нас.",
                  "Согласна с вами, это разумное решение, и оно устроит всех.",
                  "Спасибо, что всё так подробно организовали, это очень приятно.",
                  "Надеюсь, что погода не подведёт и всё пройдёт так, как мы задумали."],
        "info": ["Я посмотрела расписание: электричка отправляется в {clock}, дорога занимает около полутора часов.",
                 "Напоминаю, что {thing} мы храним в сарае, а ключ от него, как обычно, у соседей.",
                 "По прогнозу {day} обещают около двадцати пяти градусов и без осадков, "
                 "так что всё складывается удачно.",
                 "Я уже купила {food} и положила в холодильник, так что об этом можно не беспокоиться."],
    },
    "S": {
        "ask": ["Кто {place}?!", "Го {place} {day}!!!", "Кто со мной?!!", "{food} берём?!!", "Когда выезжаем?!!",
                "Кто за рулём?!!", "Го {activity}?!!!"],
        "yes": ["Я в деле!!!", "Го!!!", "Погнали!!!", "Да!!! Конечно!!!", "Беру {thing}!!!", "Я за!!!",
                "Го {day}!!!", "Без вопросов!!!"],
        "no": ["Не, я пас!!", "Не могу, матч!!!", "Облом!!! Я на работе!!", "Не успеваю!!!"],
        "suggest": ["Го {activity}!!!", "Го {day}!!!", "Го {place}!!!", "Го {time}!!!", "Берём {food}!!!"],
        "react": ["Огонь!!!", "Красота!!!", "Ахах!!!", "Жесть!!!", "Топ!!!", "Ну вы даёте!!!", "Класс!!!"],
        "info": ["Взял {thing}!!!", "Я на месте!!!", "Выезжаю!!!", "Купил {food}!!!", "Через пять минут буду!!!",
                 "Стою в пробке!!!"],
    },
    "O": {
        "ask": ["Кто едет {place}? {e}😊", "А {food} кто берёт? {e}🤔", "Девочки, а во сколько встречаемся? ⏰{e}",
                "А кто может взять {thing}? 🙏{e}", "Мы же {day} едем, да? {e}🥺"],
        "yes": ["Я за!! 😍{e}", "Конечно еду!! 🥰{e}", "Ура, я с вами!! 🎉{e}", "Да-да-да!! 💃{e}",
                "Возьму {thing} 😊{e}", "Отличная идея!! ✨{e}"],
        "no": ["Ой, я {day} не могу 😭😭", "Не получится 😢 Без меня повеселитесь 💔", "Ну вот, я заболела 🤧😷"],
        "suggest": ["Давайте {activity}! {e}✨", "А давайте {day}? 🥰{e}", "Я принесу {food}!! 😋{e}",
                    "Давайте возьмём {food} 🤤{e}"],
        "react": ["😂😂😂", "Ахаха 🤣💕", "Ура!! 🎉🥳", "Как мило 🥰{e}", "Обожаю вас 💕💕", "Ну вы даёте 🙈😂",
                  "Класс!! {e}😍"],
        "info": ["Я уже купила {food}!! 😋{e}", "Уже собираю сумку 🎒{e}", "Купила {thing} 🛍️{e}",
                 "Смотрите, какая красота {e}📸", "Я на месте!! 📍{e}"],
    },
}

# What tends to follow what: a reply to a question answers it, a suggestion is agreed to or not...
NEXT_INTENT = {
    "ask": (["yes", "no", "info", "suggest"], [5, 2, 3, 2]),
    "suggest": (["yes", "no", "react", "ask"], [6, 2, 2, 1]),
    "yes": (["react", "ask", "suggest", "yes", "info"], [3, 3, 2, 3, 2]),
    "no": (["react", "suggest", "ask"], [2, 2, 1]),
    "react": (["ask", "info", "suggest", "react"], [3, 2, 2, 1]),
    "info": (["react", "ask", "yes"], [4, 2, 1]),
}
OPENING = (["ask", "suggest", "info"], [5, 3, 2])
ANSWERS = {"yes", "no", "info"}  # intents that reply to the question before them
SPEAKERS = ["D", "I", "S", "O"]
SPEAKER_WEIGHTS = [3, 2, 2, 2]  # Дима talks most: he is the demo's persona


def _message(rng: random.Random, who: str, intent: str, topic: dict[str, list[str]]) -> str:
    template = rng.choice(TEMPLATES[who][intent])
    return template.format(
        place=rng.choice(topic["place"]), thing=rng.choice(topic["thing"]), activity=rng.choice(topic["activity"]),
        food=rng.choice(topic["food"]), day=rng.choice(DAYS), time=rng.choice(TIMES), clock=rng.choice(CLOCKS),
        e=rng.choice(topic["emoji"]))


def conversation(rng: random.Random) -> list[tuple[str, str, dict]]:
    """One talk on one topic: items of (speaker, text, options) as `make_sample.build` lays them out.

    Every item carries its gap in seconds (`g`) so the talk's length is known; answers reply to the question.
    """
    topic = TOPICS[rng.choice(sorted(TOPICS))]
    items: list[tuple[str, str, dict]] = []
    intent = rng.choices(*OPENING)[0]
    who = rng.choices(SPEAKERS, SPEAKER_WEIGHTS)[0]
    last_question = None
    for n in range(rng.randint(4, 16)):
        if n:
            intent = rng.choices(*NEXT_INTENT[intent])[0]
            # a burst of the same author now and then; otherwise someone else answers
            others = [s for s in SPEAKERS if s != who] if rng.random() > 0.12 else [who]
            who = rng.choices(others, [SPEAKER_WEIGHTS[SPEAKERS.index(s)] for s in others])[0]
        options: dict = {"g": rng.randint(5, 15) if items and items[-1][0] == who else rng.randint(20, 400)}
        if intent in ANSWERS and last_question is not None and rng.random() < 0.6:
            options["re"] = last_question - n
        elif n and rng.random() < 0.15:
            options["re"] = -1
        if intent == "ask":
            last_question = n
        items.append((who, _message(rng, who, intent, topic), options))
    return items


def conversations(rng: random.Random, messages: int, start: datetime) -> list[tuple[str, list]]:
    """About `messages` messages of talks from `start` on, each an hour or more after the previous one ended."""
    out: list[tuple[str, list]] = []
    total, when = 0, start
    while total < messages:
        items = conversation(rng)
        out.append((when.strftime("%Y-%m-%d %H:%M:%S"), items))
        total += len(items)
        length = timedelta(seconds=sum(options["g"] for _, _, options in items[1:]))
        # the next talk: later that day or on one of the next days, never inside the 60-minute gap
        when = when + length + timedelta(minutes=rng.randint(90, 60 * 30))
        if when.hour < 8:  # nobody writes at night here
            when = when.replace(hour=rng.randint(8, 11), minute=rng.randint(0, 59))
    return out
