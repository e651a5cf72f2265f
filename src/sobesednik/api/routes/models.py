"""`GET /v1/models`: the model this service serves, then each persona (adapter) it serves beside it."""

from __future__ import annotations

from fastapi import APIRouter

from sobesednik.api.deps import ApiKeyDep, ServiceDep
from sobesednik.api.errors import ERROR_RESPONSES
from sobesednik.api.schemas import ModelCard, ModelList

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[ApiKeyDep])


@router.get("/models", response_model=ModelList, responses={401: ERROR_RESPONSES[401]})
async def list_models(service: ServiceDep) -> ModelList:
    return ModelList(data=[ModelCard(id=name, created=service.created) for name in service.model_names])
