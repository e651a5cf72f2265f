"""Dependencies of the routes as `Annotated` aliases: the service state, its `Serving` once ready, the API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from sobesednik.api.errors import RETRY_AFTER_S, APIError
from sobesednik.api.service import Service
from sobesednik.api.serving import Serving

_bearer = HTTPBearer(auto_error=False, description="needed when the server has SOBESEDNIK_API_KEY set")


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def get_serving(service: ServiceDep) -> Serving:
    """What serves requests, or 503 while the model is still loading (or failed to load)."""
    if service.serving is None:
        message = ("the model is still loading: retry in a few seconds" if service.load_error is None
                   else f"the model failed to load: {service.load_error}")
        raise APIError(503, message, code="model_not_ready", headers={"Retry-After": str(RETRY_AFTER_S)})
    return service.serving


ServingDep = Annotated[Serving, Depends(get_serving)]


# The key itself is checked by `guard.RequestGuard` before the body is read; this declares the bearer scheme
# on every /v1 operation, so /docs and the OpenAPI schema show it.
ApiKeyDep = Depends(_bearer)
