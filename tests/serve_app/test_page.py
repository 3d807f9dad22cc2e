"""The onboarding page's server side, in process (the routes over a recording backend, no Ray):
the page and its files are served without a key, the capabilities carry the server's own
limits, and the refusal templates fill to exactly the messages the API refuses with.
The page itself, in a real browser against the real app: test_page_browser.py."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from serve_app.http import create_http_app
from serve_app.page import STATIC, capabilities
from tests.support.audio import voice_file
from voiceq.jobs import new_job, new_job_id
from voiceq.manager import Submission
from voiceq.settings import Settings

API = "/api/public/voice/onboarding"
REPO = Path(__file__).resolve().parents[2]


class Recording:
    """A Backend that records submissions instead of queueing them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.submitted: list[Submission] = []

    async def submit(self, sub: Submission) -> Any:
        self.submitted.append(sub)
        return new_job(job_id=new_job_id(), user_id=sub.user_id, voice_name=sub.voice_name, sample_text="",
                       audio_key="uploads/x.wav", audio_seconds=1.0, now=0.0)


def request(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.request(method, path, **kwargs)
    return asyncio.run(go())


def fill(template: str, **values: Any) -> str:
    """What page.js's fill() does with a template: {name} or {name:spec} (.Nf, g)."""
    def one(match: re.Match[str]) -> str:
        name, spec = match.group(1), match.group(2) or ""
        if name not in values:
            return match.group(0)
        fixed = re.fullmatch(r"\.(\d+)f", spec)
        if fixed:
            return f"{float(values[name]):.{int(fixed.group(1))}f}"
        return f"{values[name]:g}" if spec == "g" else str(values[name])
    return re.sub(r"\{(\w+)(?::([^}]*))?\}", one, template)


def test_the_page_its_files_and_the_capabilities_need_no_key_and_the_api_still_does(tmp_path: Path) -> None:
    settings = Settings(environment="production", data_dir=tmp_path, auth="auto", api_keys="web:web-key-0123456789")
    app = create_http_app(Recording(settings))  # type: ignore[arg-type]

    page = request(app, "GET", "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/page.js" defer></script>' in page.text
    for name, kind in (("page.js", "javascript"), ("page.css", "text/css")):
        served = request(app, "GET", f"/static/{name}")
        assert served.status_code == 200 and kind in served.headers["content-type"]
        assert served.content == (STATIC / name).read_bytes()
    missing = request(app, "GET", "/static/nothing.js")
    assert missing.status_code == 404 and missing.json()["success"] is False

    caps = request(app, "GET", f"{API}/capabilities")
    assert caps.status_code == 200 and caps.json()["authRequired"] is True and caps.json()["queued"] is True
    assert request(app, "GET", f"{API}/voices", params={"user_id": "u"}).status_code == 401
    assert request(app, "GET", "/health").json() == {"status": "ok"}


def test_capabilities_offer_the_served_models_languages_and_the_servers_limits(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, models="chatterbox-multilingual,chatterbox-turbo", require_consent=True,
                        max_upload_bytes=1234, min_audio_s=2.0, max_audio_s=30.0, max_text_chars=300,
                        max_name_chars=40)
    caps = capabilities(settings, auth_required=False)
    assert caps["queued"] is False and caps["authRequired"] is False and caps["consentRequired"] is True
    assert caps["limits"] == {"maxUploadBytes": 1234, "minAudioS": 2.0, "maxAudioS": 30.0, "maxTextChars": 300,
                              "maxNameChars": 40}
    assert caps["defaultModel"] == "chatterbox-multilingual"
    multilingual, turbo = caps["models"]
    assert {"code": "fr", "name": "French"} in multilingual["languages"] and len(multilingual["languages"]) == 23
    assert turbo["languages"] is None and turbo["minReferenceS"] == 5.0
    assert caps["messages"]["tooLong"] == "audio_file is longer than the 30 s limit"
    assert caps["messages"]["tooShort"] == "audio_file is too short: {seconds:.2f} s of audio, at least 2 s needed"


@pytest.mark.parametrize("case", ["too_short", "too_long", "too_large", "no_name", "long_name", "long_text",
                                  "no_consent", "turbo_reference"])
def test_each_template_fills_to_the_message_the_api_refuses_with(tmp_path: Path, case: str) -> None:
    settings = Settings(data_dir=tmp_path, models="chatterbox,chatterbox-turbo", max_audio_s=4.0,
                        max_name_chars=10, max_text_chars=20, max_upload_bytes=400_000,
                        require_consent=case == "no_consent")
    backend = Recording(settings)
    app = create_http_app(backend)  # type: ignore[arg-type]
    caps = request(app, "GET", f"{API}/capabilities").json()
    messages = caps["messages"]
    seconds = {"too_short": 0.5, "too_long": 5.0, "too_large": 9.0}.get(case, 3.0)
    audio = voice_file("wav", seconds=seconds)
    fields = {"user_id": "u1", "voice_name": "Me", "model": "chatterbox"}
    if case == "no_name":
        fields["voice_name"] = ""
    if case == "long_name":
        fields["voice_name"] = "A much longer name"
    if case == "long_text":
        fields["sample_text"] = "Twenty-one characters"
    if case == "turbo_reference":
        fields["model"] = "chatterbox-turbo"
    answer = request(app, "POST", f"{API}/clone", data=fields, files={"audio_file": ("v.wav", audio, "audio/wav")})
    assert answer.status_code in (413, 422, 400), answer.text
    expected = {
        "too_short": fill(messages["tooShort"], seconds=0.5),
        "too_long": messages["tooLong"],
        "too_large": fill(messages["tooLarge"], size=len(audio)),
        "no_name": messages["nameRequired"],
        "long_name": fill(messages["nameTooLong"], length=len(fields["voice_name"])),
        "long_text": fill(messages["textTooLong"], length=21),
        "no_consent": messages["consentRequired"],
        "turbo_reference": fill(caps["models"][1]["shortReference"], seconds=3.0),
    }[case]
    assert answer.json()["error"] == expected
    assert backend.submitted == []


def test_the_page_files_ship_in_the_package_data() -> None:
    import tomllib
    from fnmatch import fnmatch

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["serve_app"]
    shipped = [p.name for p in STATIC.iterdir() if any(fnmatch(f"static/{p.name}", pat) for pat in patterns)]
    assert sorted(shipped) == sorted(p.name for p in STATIC.iterdir() if not p.name.startswith("."))
