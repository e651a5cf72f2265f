"""`POST /v1/completions`: continue a raw text prompt (no dialogue format is added); no streaming."""

from __future__ import annotations

from fastapi import APIRouter, Request

from sobesednik.api.deps import ApiKeyDep, ServingDep
from sobesednik.api.errors import ERROR_RESPONSES
from sobesednik.api.schemas import Completion, CompletionRequest

router = APIRouter(prefix="/v1", tags=["completions"], dependencies=[ApiKeyDep])


@router.post("/completions", response_model=Completion, responses=ERROR_RESPONSES)
async def create_completion(body: CompletionRequest, serving: ServingDep, http_request: Request) -> Completion:
    """Continue `prompt` as plain text; the role strings and `stop` still end the continuation."""
    return await serving.text_completion(body, http_request)
