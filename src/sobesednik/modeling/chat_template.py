"""The Jinja chat template that renders OpenAI-style messages exactly like `dialogue.render()`.

It is saved into every tokenizer sobesednik writes, so `tokenizer.apply_chat_template`, vLLM and
text-generation-inference produce the dialogue format without importing sobesednik.
"""

from __future__ import annotations

from sobesednik.dialogue import ASSISTANT_TOKEN, IGNORED_ROLES, NEUTRALIZED_ROLE_STRINGS, USER_TOKEN

# `dialogue.neutralize_roles` in Jinja: role strings inside a message's content stay text, never role tokens.
_CONTENT = "message['content']" + "".join(
    f" | replace('{token}', '{inert}')" for token, inert in NEUTRALIZED_ROLE_STRINGS.items())

# Whitespace control (`{%-`) keeps the template's own layout out of the output: the only spaces rendered
# are the literal ones, one between a role token and its text and one between turns.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(first=true) -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] not in " + repr(sorted(IGNORED_ROLES)) + " -%}"
    "{%- if not ns.first %} {% endif -%}"
    "{%- if message['role'] == 'user' -%}" + USER_TOKEN
    + "{%- elif message['role'] == 'assistant' -%}" + ASSISTANT_TOKEN
    + "{%- else -%}{{ raise_exception('Unknown role: ' + message['role'] + '; use user or assistant') }}"
    "{%- endif %} {{ " + _CONTENT + " }}"
    "{%- set ns.first = false -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{%- if not ns.first %} {% endif -%}" + ASSISTANT_TOKEN + "{%- endif -%}"
)
