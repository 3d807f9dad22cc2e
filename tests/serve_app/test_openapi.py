"""/openapi.json describes every route the app serves, and is a valid OpenAPI document."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from openapi_spec_validator import validate
from starlette.routing import Route

from serve_app.http import create_http_app
from serve_app.openapi import OPERATIONS
from tests.support.inprocess import InProcessBackend, settings_for


def test_the_document_is_valid_and_covers_every_route(tmp_path: Path) -> None:
    app = create_http_app(InProcessBackend(settings_for(tmp_path, auth="off")))  # type: ignore[arg-type]

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get("/openapi.json")
    r = asyncio.run(get())
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    served = {(m, route.path) for route in app.routes if isinstance(route, Route) for m in (route.methods or ()) if m != "HEAD"}
    described = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert served == described
    # This branch's routes each have their own description; a route added elsewhere without one
    # still appears, from its handler's docstring (serve_app.openapi._fallback).
    ours = {("POST", "/v1/audio/speech"), ("GET", "/v1/audio/voices"), ("GET", "/v1/models"), ("GET", "/openapi.json"),
            ("POST", "/api/public/voice/onboarding/clone"), ("GET", "/api/public/voice/onboarding/jobs/{job_id}/audio")}
    assert ours <= set(OPERATIONS)
    assert all(op.get("summary") and op.get("responses") for ops in doc["paths"].values() for op in ops.values())
    speech = doc["paths"]["/v1/audio/speech"]["post"]
    assert speech["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SpeechRequest"}
    status = doc["paths"]["/api/public/voice/onboarding/jobs/{job_id}/status"]["get"]
    assert status["parameters"][0] == {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
