"""One item of an export's `messages` array as `prepare` reads it: a msgspec Struct of the few fields it uses.

    items = decode_messages(b'[{"id": 1, "type": "message", "text": "привет"}, 5]')   # [RawMessage(...), 5]
    item = raw_item({"id": 1, "type": "message"})   # the same for an item the ijson fallback built as a dict

Typed decoding builds only these fields and skips the rest of each message (`text_entities`, photo sizes,
reactions) without making Python objects of them: half of what `orjson.loads` of the same bytes costs, and the
normaliser reads attributes instead of looking keys up in a dict. Every field is `Any`, so decoding never rejects
a message for the type of a value: `telegram_export.normalise_message` decides what an odd value means.
An item that is not an object (a number, a string) stays what it is, and is skipped as `not_a_message_object`.
"""

from __future__ import annotations

from typing import Any

import msgspec

UNSET = msgspec.UNSET  # the key is absent: for the fields where absent and null mean different things


class RawMessage(msgspec.Struct, gc=False):  # gc=False: decoded JSON holds no reference cycles
    """The fields of a message that `prepare` reads; a field whose key is absent has the default below."""

    id: Any = None
    type: Any = None
    date: Any = None
    date_unixtime: Any = None
    from_: Any = msgspec.field(default=UNSET, name="from")  # null is a deleted account, absent an unknown one
    from_id: Any = None
    text: Any = ""
    reply_to_message_id: Any = None
    action: Any = None  # of a service message: "topic_created" opens a forum topic
    # Markers whose presence alone counts: `forwarded_from` is null for a hidden sender and still means forwarded.
    forwarded_from: Any = UNSET
    via_bot: Any = UNSET
    media_type: Any = UNSET
    photo: Any = UNSET
    file: Any = UNSET
    sticker_emoji: Any = UNSET
    poll: Any = UNSET
    location_information: Any = UNSET
    contact_information: Any = UNSET


MEDIA_FIELDS = ("media_type", "photo", "file", "sticker_emoji", "poll", "location_information", "contact_information")
# Any JSON value as an item: objects become `RawMessage`, everything else stays the plain value.
_Item = RawMessage | list[Any] | str | int | float | bool | None

decode_messages = msgspec.json.Decoder(list[_Item]).decode


def raw_item(value: Any) -> Any:
    """A parsed JSON value (a dict from ijson) as the fast path would have decoded it."""
    return msgspec.convert(value, _Item)


def has_media(raw: RawMessage) -> bool:
    return any(getattr(raw, field) is not UNSET for field in MEDIA_FIELDS)
