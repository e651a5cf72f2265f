"""Dependencies of the routes as `Annotated` aliases: the service state, a ready service, the API key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sobesednik.api.errors import RETRY_AFTER_S, APIError
from sobesednik.api.service import Service

_bearer = HTTPBearer(auto_error=False, description="needed when the server has SOBESEDNIK_API_KEY set")


def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def get_ready_service(service: ServiceDep) -> Service:
    """The service, or 503 while the model is still loading (or failed to load)."""
    if not service.ready:
        message = ("the model is still loading: retry in a few seconds" if service.load_error is None
                   else f"the model failed to load: {service.load_error}")
        raise APIError(503, message, code="model_not_ready", headers={"Retry-After": str(RETRY_AFTER_S)})
    return service


ReadyServiceDep = Annotated[Service, Depends(get_ready_service)]


def check_api_key(
    service: ServiceDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """With a key configured, require `Authorization: Bearer <key>` (compared in constant time)."""
    key = service.settings.key
    if key is None:
        return
    if credentials is None:
        raise APIError(401, "missing API key: send the header `Authorization: Bearer <SOBESEDNIK_API_KEY>`",
                       code="invalid_api_key")
    if not secrets.compare_digest(credentials.credentials.encode(), key.get_secret_value().encode()):
        raise APIError(401, "wrong API key: use the value of SOBESEDNIK_API_KEY that the server was started with",
                       code="invalid_api_key")


ApiKeyDep = Depends(check_api_key)
