"""Every Russian text the bot shows to users, in one place (translations and tone are edited here only).

Texts are plain (no parse mode), so user-provided parts never need escaping.
"""

from __future__ import annotations

START = (
    "Привет! Я собеседник: языковая модель, обученная на переписке из одного чата в Telegram. "
    "Пишите мне как обычному человеку — я отвечу в манере того чата и помню последние сообщения.\n\n"
    "В группе я отвечаю, когда меня упоминают через @{username} или отвечают на моё сообщение.\n"
    "/reset — забыть наш разговор, /persona — выбрать, кем мне быть, /help — подсказка."
)

# Added to /start when the chat has a persona (its own, or the bot's default).
START_PERSONA = "Сейчас я говорю как {persona}."

PERSONA_LIST = (
    "Кем мне быть? Сейчас: {current}.\nНа выбор: {names}.\nНапишите /persona ИМЯ, например /persona {example}"
)
PERSONA_NONE = "модель по умолчанию"
PERSONA_SET = "Хорошо, теперь я говорю как {persona}."
PERSONA_UNKNOWN = "Такой персоны нет: {persona}. На выбор: {names}."

HELP = (
    "Как со мной говорить:\n"
    "• в личных сообщениях — просто пишите, я отвечаю на каждое текстовое сообщение;\n"
    "• в группе — упомяните @{username} или ответьте на моё сообщение;\n"
    "• ответьте на конкретное сообщение, чтобы я продолжил именно ту ветку разговора.\n\n"
    "Я понимаю только текст. Мои ответы придуманы моделью и могут быть неверными.\n"
    "/reset — забыть контекст этого чата."
)

# Added to /start and /help only when the feature is on.
STREAMING_NOTE = "Я пишу ответ у вас на глазах: текст появляется по мере того, как модель его придумывает."

BUSINESS_NOTE = (
    "Меня можно подключить в настройках Telegram Business (раздел «Чат-боты»), и я буду отвечать вашим "
    "собеседникам в личных чатах от вашего имени, в вашей манере. {mode} "
    "Пока вы сами пишете в чате, я молчу."
)
BUSINESS_MODE_SUGGEST = "Каждый ответ я сначала присылаю вам сюда — отправить его или пропустить, решаете вы."
BUSINESS_MODE_AUTO = "Отвечаю сам, с небольшой паузой, как живой человек."

# Sent to the owner in the bot's own chat in `suggest` mode; the buttons below it send or drop the reply.
BUSINESS_SUGGESTION = "{name} пишет:\n{incoming}\n\nПредлагаю ответить:\n{reply}"
BUSINESS_SEND_BUTTON = "Отправить"
BUSINESS_SKIP_BUTTON = "Пропустить"
BUSINESS_SENT = "✓ Отправлено."
BUSINESS_SKIPPED = "Пропущено."
BUSINESS_EXPIRED = "Это предложение устарело."
BUSINESS_SEND_FAILED = "Не получилось отправить: Telegram не разрешил боту ответить в этом чате."

RESET_DONE = "Готово, я забыл наш разговор. Начнём сначала?"

NON_TEXT = "Я понимаю только текстовые сообщения. Напишите словами, пожалуйста."

SERVICE_DOWN = (
    "Модель сейчас недоступна, поэтому я не могу ответить. Ваше сообщение я запомнил — "
    "напишите ещё раз чуть позже."
)

SERVICE_REJECTED = "Извините, модель не смогла обработать это сообщение. Попробуйте сформулировать иначе."

UNEXPECTED_ERROR = "Ой, что-то пошло не так. Попробуйте ещё раз."

RATE_LIMITED = "Слишком много сообщений подряд. Подождите {seconds} с и напишите снова."

BUSY = "Я ещё отвечаю на предыдущее сообщение в этом чате. Подождите немного."

EMPTY_REPLY = "…"  # the model produced nothing printable; Telegram refuses empty messages

NOT_ALLOWED = "Извините, этот бот закрыт для посторонних."

# The command menu (setMyCommands): command → description, up to 256 characters each.
COMMANDS = {
    "start": "Кто я и как со мной говорить",
    "help": "Подсказка",
    "reset": "Забыть контекст этого чата",
    "persona": "Выбрать, кем мне быть",
}
