"""The onboarding page: a person records or picks a voice sample, watches the job and hears
their cloned voice, in the browser, from the app itself.

    GET /                     the page (serve_app/static/index.html)
    GET /static/{path}        its script and style sheet, shipped in the package
    GET {API}/capabilities    what this app offers, for the page (and any client) to read:
                              models and languages, whether keys and consent are required,
                              the upload limits and the wording of the refusals it can foresee

The capabilities carry the server's own limits and refusal messages (the templates the
validation code formats), so the page refuses what the API would refuse, in the same words,
without a second copy of any number in JavaScript. They are answered without a key: the page
needs them to know whether to ask for one, and they hold nothing a caller could misuse.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from voiceq.audio import TOO_LONG, TOO_SHORT
from voiceq.audio_formats import ACCEPTED
from voiceq.models import MODELS, MULTILINGUAL_LANGUAGES
from voiceq.settings import Settings

from .family import SHORT_REFERENCE
from .responses import API_PREFIX
from .validation import DEFAULT_SAMPLE_TEXT, REQUIRED, TOO_LARGE, TOO_MANY_CHARS
from .voice_validation import CONSENT_REQUIRED

STATIC = resources.files("serve_app") / "static"

# The page is the app's own: nothing from elsewhere runs in it. Results are played from blob:
# (fetched with the key) or data: URLs (development answers), or from S3's presigned URLs.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob: data: https: http:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _Slot:
    """A value left for the page to fill in: formats as `{name:spec}` whatever the spec."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __format__(self, spec: str) -> str:
        return "{" + self.name + (":" + spec if spec else "") + "}"


def refusal_templates(settings: Settings) -> dict[str, str]:
    """The server's refusal messages with its limits filled in; what only the file or the
    text can tell stays a `{name:spec}` slot (Python format specs: `.2f`, `g`)."""
    return {
        "tooLarge": TOO_LARGE.format(field="audio_file", size=_Slot("size"), max_bytes=settings.max_upload_bytes),
        "tooLong": TOO_LONG.format(max_s=settings.max_audio_s),
        "tooShort": TOO_SHORT.format(seconds=_Slot("seconds"), min_s=settings.min_audio_s),
        "nameRequired": REQUIRED.format(name="voice_name"),
        "nameTooLong": TOO_MANY_CHARS.format(name="voice_name", length=_Slot("length"),
                                             max_chars=settings.max_name_chars),
        "textTooLong": TOO_MANY_CHARS.format(name="sample_text", length=_Slot("length"),
                                             max_chars=settings.max_text_chars),
        "consentRequired": CONSENT_REQUIRED,
    }


def capabilities(settings: Settings, *, auth_required: bool) -> dict[str, Any]:
    """What this app offers, for the page. Pure: settings in, JSON out."""
    models = []
    for name in settings.served_models:
        spec = MODELS[name]
        models.append({
            "name": name,
            "description": spec.description,
            "languages": (
                [{"code": code, "name": MULTILINGUAL_LANGUAGES.get(code, code)} for code in sorted(spec.languages)]
                if spec.languages is not None else None
            ),
            "minReferenceS": spec.min_reference_s,
            "shortReference": (
                SHORT_REFERENCE.format(model=name, minimum=spec.min_reference_s, seconds=_Slot("seconds"))
                if spec.min_reference_s else None
            ),
        })
    return {
        "apiPrefix": API_PREFIX,
        "environment": settings.environment,
        # production: 202 and a status URL to poll; development: 200 with the finished clip.
        "queued": settings.production,
        "authRequired": auth_required,
        "consentRequired": settings.require_consent,
        "models": models,
        "defaultModel": settings.served_models[0] if settings.served_models else None,
        "limits": {
            "maxUploadBytes": settings.max_upload_bytes,
            "minAudioS": settings.min_audio_s,
            "maxAudioS": settings.max_audio_s,
            "maxTextChars": settings.max_text_chars,
            "maxNameChars": settings.max_name_chars,
        },
        "acceptedFormats": ACCEPTED,
        "defaultSampleText": DEFAULT_SAMPLE_TEXT,
        "messages": refusal_templates(settings),
    }


async def page(request: Request) -> Response:
    """The onboarding page (HTML): record or pick a voice sample, clone it, follow the job, hear it."""
    return FileResponse(str(STATIC / "index.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def capabilities_route(request: Request) -> Response:
    """What this app offers (no key needed): models and languages, whether keys and consent are
    required, upload limits and the wording of the refusals a client can foresee."""
    settings: Settings = request.app.state.backend.settings
    return JSONResponse(capabilities(settings, auth_required=request.app.state.keyring.required),
                        headers={"Cache-Control": "no-cache"})


def page_routes() -> list[BaseRoute]:
    return [
        Route("/", page, methods=["GET"]),
        Route(f"{API_PREFIX}/capabilities", capabilities_route, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
    ]
