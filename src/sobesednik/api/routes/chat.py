"""`POST /v1/chat/completions`: a reply (or `n`) to a dialogue, as one JSON body or a stream of SSE chunks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from sobesednik.api.deps import ApiKeyDep, ReadyServiceDep
from sobesednik.api.errors import ERROR_RESPONSES, APIError, as_api_error, error_body
from sobesednik.api.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    Usage,
)
from sobesednik.api.service import Service, completion_id
from sobesednik.inference.generator import Completion

router = APIRouter(prefix="/v1", tags=["chat"], dependencies=[ApiKeyDep])

# Each server-sent event: `data:` holds a chat.completion.chunk as JSON, or the final `[DONE]`.
_EVENT = {"type": "object", "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
          "required": ["data"]}
STREAM_RESPONSE = {"content": {"text/event-stream": {"schema": _EVENT}},
                   "description": "with stream=true: `data: <chat.completion.chunk JSON>` events, then `data: [DONE]`"}


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={**ERROR_RESPONSES, 200: STREAM_RESPONSE})
async def create_chat_completion(body: ChatCompletionRequest, service: ReadyServiceDep,
                                 http_request: Request) -> ChatCompletion | StreamingResponse:
    """Generate the assistant's next turn of `messages` in the dialogue format."""
    if len(body.messages) > service.settings.max_messages:
        raise APIError(400, f"{len(body.messages)} messages are more than this server allows "
                            f"({service.settings.max_messages}): send only the recent part", param="messages")
    turns = [message.model_dump() for message in body.messages if message.role in ("user", "assistant")]
    if not turns:
        raise APIError(400, "messages hold no user or assistant turn: add at least one user message",
                       param="messages")
    service.check_size([turn["content"] for turn in turns], "messages")
    name, adapter = service.adapter_for(body.model)
    params = service.params_for(body)
    assert service.generator is not None
    prompt = service.generator.chat_prompt(turns, params.max_new_tokens)
    rows = service.rows_for(prompt, params, body.n, adapter)
    if body.stream:
        pieces = service.stream(rows)  # queued now: a full queue is a 429 before the stream starts
        return StreamingResponse(_chunks(service, name, len(rows), pieces), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    completions = await service.complete(rows, http_request)
    return ChatCompletion(
        id=completion_id("chatcmpl"), created=service.created, model=name,
        choices=[ChatChoice(index=i, message=AssistantMessage(content=c.text), finish_reason=c.finish_reason)
                 for i, c in enumerate(completions)],
        usage=Usage(prompt_tokens=len(prompt), completion_tokens=sum(c.completion_tokens for c in completions),
                    total_tokens=len(prompt) + sum(c.completion_tokens for c in completions)))


def sse(data: str) -> str:
    return f"data: {data}\n\n"


async def _chunks(service: Service, name: str, choices: int, pieces: AsyncIterator[tuple[int, str] | list[Completion]],
                  ) -> AsyncIterator[str]:
    """OpenAI's chunk sequence: the role, content deltas, a finish_reason per choice, then `[DONE]`; a failure
    on the way ends it with an error event (the same envelope as a plain response) and `[DONE]` all the same."""
    chunk_id = completion_id("chatcmpl")

    def chunk(index: int, delta: Delta, finish_reason: str | None = None) -> str:
        choice = ChunkChoice(index=index, delta=delta, finish_reason=finish_reason)
        return sse(ChatCompletionChunk(id=chunk_id, created=service.created, model=name,
                                       choices=[choice]).model_dump_json(exclude_none=True))

    for index in range(choices):
        yield chunk(index, Delta(role="assistant", content=""))
    try:
        async for item in pieces:
            if isinstance(item, tuple):
                yield chunk(item[0], Delta(content=item[1]))
            else:
                for index, completion in enumerate(item):
                    yield chunk(index, Delta(), completion.finish_reason)
    except Exception as failure:  # every failure becomes the client's error event
        error = as_api_error(failure)
        body = error_body(error.status, error.message, param=error.param, code=error.code)
        yield sse(json.dumps(body, ensure_ascii=False))
    yield sse("[DONE]")
