"""`POST /v1/completions`: continue a raw text prompt (no dialogue format is added); no streaming."""

from __future__ import annotations

from fastapi import APIRouter, Request

from sobesednik.api.deps import ApiKeyDep, ReadyServiceDep
from sobesednik.api.errors import ERROR_RESPONSES, APIError
from sobesednik.api.schemas import Completion, CompletionChoice, CompletionRequest, Usage
from sobesednik.api.service import completion_id

router = APIRouter(prefix="/v1", tags=["completions"], dependencies=[ApiKeyDep])


@router.post("/completions", response_model=Completion, responses=ERROR_RESPONSES)
async def create_completion(body: CompletionRequest, service: ReadyServiceDep, http_request: Request) -> Completion:
    """Continue `prompt` as plain text; the role strings and `stop` still end the continuation."""
    if body.stream:
        raise APIError(400, "stream=true is supported on /v1/chat/completions only: drop it here", param="stream")
    service.check_size([body.prompt], "prompt")
    name, adapter = service.adapter_for(body.model)
    params = service.params_for(body)
    assert service.generator is not None
    prompt = service.generator.text_prompt(body.prompt, params.max_new_tokens)
    completions = await service.complete(service.rows_for(prompt, params, body.n, adapter), http_request)
    generated = sum(c.completion_tokens for c in completions)
    return Completion(
        id=completion_id("cmpl"), created=service.created, model=name,
        choices=[CompletionChoice(index=i, text=c.text, finish_reason=c.finish_reason)
                 for i, c in enumerate(completions)],
        usage=Usage(prompt_tokens=len(prompt), completion_tokens=generated, total_tokens=len(prompt) + generated))
