"""A fake Telegram Bot API server on 127.0.0.1 (aiohttp) for driving the real aiogram bot over HTTP.

It speaks the Bot API's wire format at `/bot<token>/<method>` for the methods the bot uses: getMe, getUpdates
(offset, long-poll timeout), sendMessage, sendMessageDraft, editMessageText ("message is not modified" like
Telegram), sendChatAction, answerCallbackQuery, getBusinessConnection, setMyCommands, deleteWebhook, setWebhook.
It records every call with its arrival time, hands out message ids per chat like Telegram (growing), remembers
messages so that a pushed reply carries the full `reply_to_message`, can answer the next call of a method with a
429 `retry_after`, reject every call of a method with an error, or lack a method (404, as an old server). Business
mode: `push_business_connection`, `push_business_message`, sends with `business_connection_id` come back as the
owner's messages sent by the bot (and as a `business_message` update, as Telegram echoes them), and
`push_callback` presses an inline button. In webhook mode it POSTs pushed updates to the URL given by setWebhook
with the secret header.

    async with FakeTelegramAPI(token) as api:
        bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
        api.push_message(chat_id=1, text="привет")
        sent = await api.wait_for("sendMessage")
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

BOT_ID = 7000001
BOT_USERNAME = "sobesednik_test_bot"
# Form fields that aiogram sends JSON-encoded.
_JSON_FIELDS = {"commands", "allowed_updates", "reply_parameters", "entities", "reply_markup", "link_preview_options"}
# Update ids grow across every fake of a test session, as Telegram's never repeat: bots of different tests that
# share one redis-server must not see each other's ids as redeliveries.
_UPDATE_IDS = itertools.count(1)
_INT_FIELDS = {"chat_id", "offset", "limit", "timeout", "reply_to_message_id", "message_id", "draft_id"}


@dataclass
class Call:
    """One request the bot made: the method and its parameters, decoded."""

    method: str
    params: dict[str, Any]
    at: float = 0.0  # time.monotonic() on arrival


class FakeTelegramAPI:
    """Start with `async with`; `base_url` goes into `TelegramAPIServer.from_base`."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.webhook: dict[str, Any] | None = None  # url, secret_token from setWebhook
        self.webhook_responses: list[int] = []  # HTTP statuses the bot's webhook answered
        self.me = {"id": BOT_ID, "is_bot": True, "first_name": "Собеседник", "username": BOT_USERNAME}
        self._updates: list[dict[str, Any]] = []
        self.last_update: dict[str, Any] | None = None  # the update pushed last, as delivered
        self._message_ids: defaultdict[int, itertools.count] = defaultdict(lambda: itertools.count(1))
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._flood: dict[str, int] = {}  # method → retry_after for its next call
        self._rejected: dict[str, tuple[int, str]] = {}  # method → (status, description) for every call
        self._missing: dict[str, bool] = {}  # method → answered 404 with JSON (True) or aiohttp's plain text
        self._connections: dict[str, dict[str, Any]] = {}
        self._callback_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> FakeTelegramAPI:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        # handler_cancellation: a long poll ends when the bot hangs up, as on Telegram's side.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    # --- what tests call -------------------------------------------------------------------------------------

    def user(self, user_id: int = 100, first_name: str = "Аня") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name}

    def push_message(
        self,
        chat_id: int,
        text: str | None = "привет",
        *,
        user: dict[str, Any] | None = None,
        chat_type: str = "private",
        reply_to: int | None = None,
        entities: list[dict[str, Any]] | None = None,
        edit_of: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Deliver a user's message (or, with `edit_of`, an edit of one) as an update; returns the message."""
        chat = self._chats.setdefault(chat_id, {"id": chat_id, "type": chat_type, "title": f"chat {chat_id}"})
        message_id = edit_of if edit_of is not None else next(self._message_ids[chat_id])
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": user or self.user(),
            **(extra or {}),
        }
        if text is not None:
            message["text"] = text
        if entities:
            message["entities"] = entities
        if reply_to is not None:
            message["reply_to_message"] = self._messages[(chat_id, reply_to)]
        if edit_of is not None:
            message["edit_date"] = int(time.time())
        self._messages[(chat_id, message_id)] = message
        self.push_update({"edited_message" if edit_of is not None else "message": message})
        return message

    def mention(self, text: str, username: str = BOT_USERNAME) -> list[dict[str, Any]]:
        """The entity Telegram attaches to `@username` inside `text` (offsets in UTF-16 units; BMP text here)."""
        return [{"type": "mention", "offset": text.index(f"@{username}"), "length": len(username) + 1}]

    def push_update(self, payload: dict[str, Any]) -> None:
        update = self.last_update = {"update_id": next(_UPDATE_IDS), **payload}
        if self.webhook is not None:
            asyncio.get_running_loop().create_task(self._post_webhook(update))
            return
        self._updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())

    def fail_next(self, method: str, retry_after: int) -> None:
        """Answer the next call of `method` with 429 Too Many Requests and this `retry_after`."""
        self._flood[method] = retry_after

    def reject(self, method: str, description: str, status: int = 400) -> None:
        """Answer every call of `method` with this error, as Telegram does for a peer that takes no drafts."""
        self._rejected[method] = (status, description)

    def lack(self, method: str, *, json_body: bool = True) -> None:
        """Behave like a Bot API server without `method`: 404, with the Bot API's JSON or a plain-text page."""
        self._missing[method] = json_body

    def push_business_connection(
        self, connection_id: str, owner: dict[str, Any], *, enabled: bool = True, can_reply: bool = True,
        announce: bool = True,
    ) -> dict[str, Any]:
        """The owner connects the bot; `announce=False`: it was connected before, only getBusinessConnection knows."""
        connection = {
            "id": connection_id,
            "user": owner,
            "user_chat_id": owner["id"],
            "date": int(time.time()),
            "is_enabled": enabled,
            "rights": {"can_reply": can_reply},
        }
        self._connections[connection_id] = connection
        if announce:
            self.push_update({"business_connection": connection})
        return connection

    def push_business_message(
        self, connection_id: str, chat_id: int, text: str, *, user: dict[str, Any]
    ) -> dict[str, Any]:
        """A message in the owner's private chat `chat_id` (the contact's id), written by `user` (either side)."""
        contact_chat = {"id": chat_id, "type": "private", "first_name": f"contact {chat_id}"}
        message = {
            "message_id": next(self._message_ids[self._business_key(connection_id, chat_id)]),
            "date": int(time.time()),
            "chat": contact_chat,
            "from": user,
            "text": text,
            "business_connection_id": connection_id,
        }
        self.push_update({"business_message": message})
        return message

    def push_callback(self, user: dict[str, Any], message: dict[str, Any], data: str) -> None:
        """The user pressed the inline button with `data` under the bot's `message`."""
        callback = {"id": str(next(self._callback_ids)), "from": user, "chat_instance": "1", "message": message,
                    "data": data}
        self.push_update({"callback_query": callback})

    @staticmethod
    def _business_key(connection_id: str, chat_id: int) -> int:
        # Message ids of one business chat grow on their own; keep them apart from the bot's own chats.
        return hash((connection_id, chat_id))

    def bot_messages(self, chat_id: int) -> list[dict[str, Any]]:
        """The messages the bot has sent to a chat, as Telegram returned them (with their message ids)."""
        return [m for (chat, _), m in sorted(self._messages.items()) if chat == chat_id and m["from"]["id"] == BOT_ID]

    def sent(self, method: str = "sendMessage", chat_id: int | None = None) -> list[dict[str, Any]]:
        return [
            call.params
            for call in self.calls
            if call.method == method and (chat_id is None or call.params.get("chat_id") == chat_id)
        ]

    async def wait_for(self, method: str, count: int = 1, *, chat_id: int | None = None, timeout: float = 30) -> list:
        """Wait until `method` was called `count` times (for `chat_id`), successfully; return those calls."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.sent(method, chat_id)) >= count)
        return self.sent(method, chat_id)

    # --- the server side -------------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _post_webhook(self, update: dict[str, Any]) -> None:
        assert self.webhook is not None
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook.get("secret_token", "")}
        async with aiohttp.ClientSession() as session, session.post(
            self.webhook["url"], json=update, headers=headers
        ) as response:
            self.webhook_responses.append(response.status)
        await self._notify()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = {key: self._decode(key, value) for key, value in (await request.post()).items()}
        if method in self._missing:
            self.calls.append(Call(f"{method}:404", params, time.monotonic()))
            if self._missing[method]:
                body = {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
                return web.json_response(body, status=404)
            raise web.HTTPNotFound()
        if method in self._rejected:
            status, description = self._rejected[method]
            self.calls.append(Call(f"{method}:{status}", params, time.monotonic()))
            return web.json_response({"ok": False, "error_code": status, "description": description}, status=status)
        if method in self._flood:
            retry_after = self._flood.pop(method)
            self.calls.append(Call(f"{method}:429", params, time.monotonic()))
            body = {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {retry_after}",
                "parameters": {"retry_after": retry_after},
            }
            return web.json_response(body, status=429)
        if method == "getUpdates":
            # Recorded on arrival: a bot waiting in a long poll is a ready bot.
            self.calls.append(Call(method, params, time.monotonic()))
            await self._notify()
            result: Any = await self._get_updates(params)
        else:
            try:
                result = self._answer(method, params)
            except _BadRequest as error:
                self.calls.append(Call(f"{method}:400", params, time.monotonic()))
                return web.json_response({"ok": False, "error_code": 400, "description": str(error)}, status=400)
            self.calls.append(Call(method, params, time.monotonic()))
            await self._notify()
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _decode(key: str, value: Any) -> Any:
        if key in _JSON_FIELDS:
            return json.loads(value)
        if key in _INT_FIELDS:
            return int(value)
        return value

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = params.get("offset", 0)
        # Telegram forgets updates below the offset: the bot confirmed them.
        self._updates = [update for update in self._updates if update["update_id"] >= offset]
        if not self._updates and params.get("timeout", 0) > 0:
            try:
                async with asyncio.timeout(params["timeout"]), self._changed:
                    await self._changed.wait_for(lambda: bool(self._updates))
            except TimeoutError:
                pass
        return list(self._updates)

    def _answer(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return self.me
        if method == "sendMessage":
            return self._send_message(params)
        if method == "editMessageText":
            message = self._messages[(params["chat_id"], params["message_id"])]
            if message["text"] == params["text"] and "reply_markup" not in params:
                raise _BadRequest(
                    "Bad Request: message is not modified: specified new message content and reply markup of the "
                    "message are exactly the same as a current content and reply markup of the message"
                )
            message["text"] = params["text"]
            message["edit_date"] = int(time.time())
            message.pop("reply_markup", None)
            if params.get("reply_markup"):
                message["reply_markup"] = params["reply_markup"]
            return message
        if method == "getBusinessConnection":
            return self._connections[params["business_connection_id"]]
        if method in {"sendMessageDraft", "answerCallbackQuery"}:
            return True
        if method == "setWebhook":
            self.webhook = {"url": params["url"], "secret_token": params.get("secret_token", "")}
            return True
        if method == "deleteWebhook":
            self.webhook = None
            return True
        if method in {"sendChatAction", "setMyCommands"}:
            return True
        raise web.HTTPNotImplemented(text=f"fake Bot API: {method} is not implemented")

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params["chat_id"]
        connection_id = params.get("business_connection_id")
        if connection_id is not None:
            # On behalf of the owner: in the owner's chat with the contact, from the owner, sent by this bot.
            connection = self._connections[connection_id]
            message: dict[str, Any] = {
                "message_id": next(self._message_ids[self._business_key(connection_id, chat_id)]),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": f"contact {chat_id}"},
                "from": connection["user"],
                "sender_business_bot": self.me,
                "business_connection_id": connection_id,
                "text": params["text"],
            }
            self.push_update({"business_message": message})
            return message
        message = {
            "message_id": next(self._message_ids[chat_id]),
            "date": int(time.time()),
            "chat": self._chats.get(chat_id, {"id": chat_id, "type": "private"}),
            "from": self.me,
            "text": params["text"],
        }
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        reply_to = params.get("reply_to_message_id") or params.get("reply_parameters", {}).get("message_id")
        if reply_to is not None:
            message["reply_to_message"] = self._messages[(chat_id, reply_to)]
        self._messages[(chat_id, message["message_id"])] = message
        return message


class _BadRequest(Exception):
    """A call Telegram would refuse with 400 and this description."""
