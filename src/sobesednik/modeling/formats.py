"""The two ways a conversation becomes model text: the dialogue format, or the base's own chat template.

- `dialogue` (the default, ruDialoGPT's): `@@ПЕРВЫЙ@@ … @@ВТОРОЙ@@ …`, rendered by `dialogue.render()` and the
  exported template `modeling/chat_template.py`; a reply ends with `@@ПЕРВЫЙ@@`.
- `native` (`train --format native`, for bases that ship a chat template: ChatML for Qwen, Llama 3's, Gemma's):
  the tokenizer's template renders the messages, the persona is the `assistant`, and a reply ends with the
  template's end-of-turn token (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`), found by rendering a probe.

A tokenizer carries its format: a chat template that contains `@@ПЕРВЫЙ@@` (or none at all, as ruDialoGPT ships)
is the dialogue format, any other template is native. So a model dir or run dir needs no extra record, and
training, evaluation and serving agree on the format of whatever they load.

    chat = chat_format(tokenizer)
    prompt, reply = chat.texts(messages[:-1], messages[-1]["content"])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sobesednik.dialogue import (
    CLOSING_TOKEN,
    IGNORED_ROLES,
    ROLE_TOKENS,
    USER_TOKEN,
    Message,
    neutralize_roles,
    render,
    render_reply,
)
from sobesednik.errors import ConfigError

Format = Literal["dialogue", "native"]

_PROBE = "проверка"  # a reply rendered to find where the template puts the reply and what closes it
WORD_JOINER = "\u2060"  # invisible; breaks the exact match a special token needs (as dialogue.neutralize_roles)


def format_of(tokenizer: Any) -> Format:
    """The format a tokenizer's chat template renders (see the module docstring)."""
    template = tokenizer.chat_template
    return "dialogue" if not template or USER_TOKEN in template else "native"


def special_strings(tokenizer: Any) -> tuple[str, ...]:
    """Every special token's text: role and turn markers, BOS/EOS/pad."""
    specials = {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}
    return tuple(sorted(specials | set(tokenizer.all_special_tokens), key=len, reverse=True))


@dataclass(frozen=True)
class ChatFormat:
    """How one tokenizer's format renders prompts and replies, and which strings end a reply."""

    name: Format
    tokenizer: Any
    end_of_turn: str  # the token that closes every trained reply
    markers: tuple[str, ...]  # strings that end a reply when the model writes them; inert inside message content

    def neutralize(self, text: str) -> str:
        """`text` with every marker in it made inert (a WORD JOINER after its first character); it looks the same."""
        if self.name == "dialogue":
            return neutralize_roles(text)
        for marker in self.markers:
            text = text.replace(marker, marker[0] + WORD_JOINER + marker[1:])
        return text

    def _messages(self, messages: Sequence[Message]) -> list[dict[str, str]]:
        return [{"role": m["role"], "content": self.neutralize(m["content"])} for m in messages
                if m["role"] not in IGNORED_ROLES]

    def prompt(self, messages: Sequence[Message]) -> str:
        """The text the model continues with the reply."""
        if self.name == "dialogue":
            return render(messages, add_generation_prompt=True)
        return self.tokenizer.apply_chat_template(self._messages(messages), add_generation_prompt=True,
                                                  tokenize=False)

    def texts(self, context: Sequence[Message], reply: str) -> tuple[str, str]:
        """The prompt for `context` and the text the model must write after it: the reply and its closing token."""
        prompt = self.prompt(context)
        if self.name == "dialogue":
            return prompt, render_reply(reply)
        whole = self.tokenizer.apply_chat_template(
            self._messages([*context, {"role": "assistant", "content": reply}]), tokenize=False)
        if not whole.startswith(prompt):
            raise ConfigError("this base's chat template does not render a conversation as the prompt followed by "
                              "the reply, so the reply cannot be told apart from the context: train with "
                              "--format dialogue")
        rest = whole[len(prompt):]
        return prompt, rest[: rest.index(self.end_of_turn) + len(self.end_of_turn)]


def chat_format(tokenizer: Any) -> ChatFormat:
    """The `ChatFormat` of a tokenizer prepared by `modeling.load.prepare_tokenizer` (or any HF tokenizer)."""
    if format_of(tokenizer) == "dialogue":
        return ChatFormat("dialogue", tokenizer, CLOSING_TOKEN, tuple(ROLE_TOKENS.values()))
    markers = special_strings(tokenizer)
    return ChatFormat("native", tokenizer, native_end_of_turn(tokenizer, markers), markers)


def native_end_of_turn(tokenizer: Any, markers: Sequence[str]) -> str:
    """The special token the chat template writes right after an assistant reply."""
    probe = [{"role": "user", "content": "привет"}, {"role": "assistant", "content": _PROBE}]
    rendered = tokenizer.apply_chat_template(probe, tokenize=False)
    after = rendered[rendered.rindex(_PROBE) + len(_PROBE):]
    found = [(after.find(marker), marker) for marker in markers if marker in after]
    if not found:
        raise ConfigError("this base's chat template closes an assistant turn with no special token, so a reply "
                          "would never end: train with --format dialogue")
    return min(found)[1]
