"""`POST /v1/chat/completions`: a reply (or `n`) to a dialogue, as one JSON body or a stream of SSE chunks."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from sobesednik.api.deps import ApiKeyDep, ServingDep
from sobesednik.api.errors import ERROR_RESPONSES
from sobesednik.api.schemas import ChatCompletion, ChatCompletionRequest

router = APIRouter(prefix="/v1", tags=["chat"], dependencies=[ApiKeyDep])

# Each server-sent event: `data:` holds a chat.completion.chunk as JSON, or the final `[DONE]`.
_EVENT = {"type": "object", "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
          "required": ["data"]}
STREAM_RESPONSE = {"content": {"text/event-stream": {"schema": _EVENT}},
                   "description": "with stream=true: `data: <chat.completion.chunk JSON>` events, then `data: [DONE]`"}


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={**ERROR_RESPONSES, 200: STREAM_RESPONSE})
async def create_chat_completion(body: ChatCompletionRequest, serving: ServingDep,
                                 http_request: Request) -> ChatCompletion | StreamingResponse:
    """Generate the assistant's next turn of `messages` in the dialogue format."""
    return await serving.chat_completion(body, http_request)
