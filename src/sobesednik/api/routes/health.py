"""Open endpoints for orchestrators: `/healthz` (alive), `/readyz` (model loaded and warmed up), `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sobesednik.api.deps import ServiceDep
from sobesednik.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and answering; says nothing about the model."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health, "description": "not ready yet"}})
async def readyz(service: ServiceDep) -> Health | JSONResponse:
    """200 once the model is loaded and has generated its first token; 503 before (or if loading failed)."""
    if service.ready:
        return Health(status="ok")
    health = Health(status="loading") if service.load_error is None else Health(status="failed",
                                                                                 detail=service.load_error)
    return JSONResponse(health.model_dump(), status_code=503)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"}})
async def metrics(service: ServiceDep) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
