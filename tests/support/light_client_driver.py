"""Run by a fresh virtual environment's Python that has only the light client installed
(voiceq-client and httpx): drives the app and reports what got imported. Imports nothing from
the repository. argv: API URL, API key, voice id, user id, output folder."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path

from voiceq_client import AsyncVoiceqClient, VoiceqClient


def main() -> None:
    url, key, voice_id, user_id, out = sys.argv[1:6]
    report: dict = {}
    with VoiceqClient(url, api_key=key, timeout_s=300) as client:
        report["voices"] = [v.voice_id for v in client.voices(user_id)]
        submitted = client.submit(None, user_id=user_id, voice_name="Light", voice_id=voice_id,
                                  sample_text="From the light client.", response_format="wav")
        final = client.wait(submitted.job_id, timeout_s=300, interval_s=0.2)
        report["status"] = final.status
        audio = client.result_audio(final.job_id)
        Path(out, "result.wav").write_bytes(audio)
        report["speech_bytes"] = sum(len(piece) for piece in client.speech("Hello.", voice_id=voice_id,
                                                                            response_format="pcm"))

    async def async_part() -> str:
        async with AsyncVoiceqClient(url, api_key=key) as client:
            return (await client.status(submitted.job_id)).status
    report["async_status"] = asyncio.run(async_part())
    report["imported"] = sorted(m for m in ("ray", "torch", "numpy", "voiceq", "starlette") if m in sys.modules)
    report["installed"] = sorted(m for m in ("ray", "torch", "voiceq") if importlib.util.find_spec(m) is not None)
    report["client_file"] = sys.modules["voiceq_client"].__file__
    print(json.dumps(report))


if __name__ == "__main__":
    main()
