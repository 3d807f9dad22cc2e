"""The Chatterbox family end to end over HTTP: one app serving English, Turbo and
Multilingual (each its own inference deployment), real Serve, real Ray, real SQLite, real
Chatterbox modules (random weights, tiny T3s, tiny speech-token caps).

One voice is cloned once and used by all three text-to-speech models; the multilingual model
speaks two languages; a conversion job says a recording in that voice; every invalid
combination is refused with a 4xx naming the problem, and nothing is stored for it.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.serve_app.test_api import API, assert_playable_mp3
from tests.support.audio import voice_file
from tests.support.server import VoiceqServer, wait_until

pytestmark = pytest.mark.slow
ALL = "chatterbox,chatterbox-turbo,chatterbox-multilingual"


@pytest.fixture(scope="module")
def family(voiceq_server: VoiceqServer, turbo_checkpoint_dir: Path, multilingual_checkpoint_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> VoiceqServer:
    voiceq_server.deploy(voiceq_server.settings_for(
        environment="development", data_dir=tmp_path_factory.mktemp("family"), models=ALL,
        chatterbox_turbo_ckpt_dir=turbo_checkpoint_dir, chatterbox_multilingual_ckpt_dir=multilingual_checkpoint_dir,
        max_speech_tokens=12, inference_num_cpus=0.5,
    ))
    return voiceq_server


def blobs(server: VoiceqServer) -> set[str]:
    assert server.settings is not None
    root = server.settings.blob_dir
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def clip_of(body: dict) -> bytes:
    return base64.b64decode(body["sample_audio"].split(",", 1)[1])


def test_one_voice_every_model_two_languages_and_a_conversion(family: VoiceqServer) -> None:
    with family.client() as c:
        # Turbo needs more than 5 s of reference: one 5.5 s sample serves every model.
        first = c.post(f"{API}/clone", data={"user_id": "fam", "voice_name": "Family", "sample_text": "Hello there."},
                       files={"audio_file": ("v.wav", voice_file("wav", seconds=5.5, seed=4), "audio/wav")})
        assert first.status_code == 200, first.text
        voice_id = first.json()["voice_id"]
        assert_playable_mp3(clip_of(first.json()), min_seconds=0.1)
        statuses = {"chatterbox": c.get(f"{API}/jobs/{first.json()['jobId']}/status").json()}

        for model, language, text in [("chatterbox-turbo", None, "Turbo speaks now."),
                                      ("chatterbox-multilingual", "fr", "Bonjour tout le monde."),
                                      ("chatterbox-multilingual", "de", "Guten Tag.")]:
            fields = {"user_id": "fam", "voice_name": "Family", "voice_id": voice_id, "model": model,
                      "sample_text": text, **({"language": language} if language else {})}
            r = c.post(f"{API}/clone", data=fields)
            assert r.status_code == 200, r.text
            assert r.json()["voice_id"] == voice_id
            assert_playable_mp3(clip_of(r.json()), min_seconds=0.1)
            status = c.get(f"{API}/jobs/{r.json()['jobId']}/status").json()
            assert (status["model"], status.get("language"), status["kind"]) == (model, language, "clone")
            statuses[f"{model}/{language}"] = status
        assert statuses["chatterbox"]["model"] == "chatterbox"

        # Each model prepared the voice once, from the kept reference, under the voice's prefix.
        stored = {k for k in blobs(family) if k.startswith(f"voices/{voice_id}")}
        assert stored == {f"voices/{voice_id}.pt", f"voices/{voice_id}/reference.wav",
                          f"voices/{voice_id}/chatterbox-turbo.pt", f"voices/{voice_id}/chatterbox-multilingual.pt"}

        # Voice conversion: queued, then completed like any job.
        conv = c.post(f"{API}/convert", data={"user_id": "fam", "voice_id": voice_id},
                      files={"source_audio": ("s.wav", voice_file("wav", seconds=1.5, seed=9), "audio/wav")})
        assert conv.status_code == 202, conv.text
        job_id = conv.json()["jobId"]
        done = wait_until(lambda: (s := c.get(f"{API}/jobs/{job_id}/status").json())["status"] in
                          ("completed", "failed") and s, timeout_s=300, what="the conversion")
        assert done["status"] == "completed", done
        assert (done["kind"], done["model"], done["voiceId"]) == ("convert", "chatterbox", voice_id)
        audio = c.get(f"{API}/jobs/{job_id}/audio")
        assert audio.status_code == 200
        # the source's 1.5 s come back as about 1.5 s of speech (25 tokens a second, 2 mel frames each)
        assert_playable_mp3(audio.content, min_seconds=1.0)

        stats = c.get(f"{API}/stats").json()
        assert stats["completed"] == 5  # the seed's fields as before
        by_model = stats["byModel"]
        assert by_model["chatterbox"]["completed"] == 2  # the first clone and the conversion
        assert by_model["chatterbox-turbo"]["completed"] == 1
        assert by_model["chatterbox-multilingual"]["completed"] == 2
        for entry in by_model.values():
            assert entry["audioSeconds"] > 0 and entry["gpuSeconds"] > 0 and entry["costPerAudioSecond"] > 0


BAD = [
    ({"model": "chatterbox-xl"}, 400, "model", "unknown model"),
    ({"model": "chatterbox-multilingual"}, 400, "language", "needs a language"),
    ({"model": "chatterbox-multilingual", "language": "xx"}, 400, "language", "unsupported language"),
    ({"language": "fr"}, 400, "language", "English only"),
    ({"model": "chatterbox-turbo", "language": "en"}, 400, "language", "English only"),
    ({"model": "chatterbox-turbo", "cfg_weight": "0.3"}, 400, "cfg_weight", "does not use cfg_weight"),
    ({"model": "chatterbox-turbo", "exaggeration": "0.7"}, 400, "exaggeration", "does not use exaggeration"),
]


def test_invalid_combinations_are_refused_and_store_nothing(family: VoiceqServer) -> None:
    with family.client() as c:
        before_blobs, before = blobs(family), c.get(f"{API}/stats").json()["total"]
        for fields, code, field, words in BAD:
            r = c.post(f"{API}/clone", data={"user_id": "bad", "voice_name": "x", **fields},
                       files={"audio_file": ("v.wav", voice_file("wav", seconds=5.5), "audio/wav")})
            assert (r.status_code, r.json().get("field")) == (code, field), (fields, r.text)
            assert words in r.json()["error"], r.text
        short = c.post(f"{API}/clone", data={"user_id": "bad", "voice_name": "x", "model": "chatterbox-turbo"},
                       files={"audio_file": ("v.wav", voice_file("wav", seconds=3.0), "audio/wav")})
        assert short.status_code == 400 and "longer than 5 s" in short.json()["error"]
        source = {"source_audio": ("s.wav", voice_file("wav", seconds=1.5), "audio/wav")}
        no_source = c.post(f"{API}/convert", data={"user_id": "bad", "voice_id": "voice_" + "0" * 16})
        assert no_source.status_code == 400 and no_source.json()["field"] == "source_audio"
        with_text = c.post(f"{API}/convert", data={"user_id": "bad", "voice_id": "voice_" + "0" * 16,
                                                   "sample_text": "no"}, files=source)
        assert with_text.status_code == 400 and with_text.json()["field"] == "sample_text"
        no_target = c.post(f"{API}/convert", data={"user_id": "bad"}, files=source)
        assert no_target.status_code == 400
        unknown_voice = c.post(f"{API}/convert", data={"user_id": "bad", "voice_id": "voice_" + "0" * 16},
                               files=source)
        assert unknown_voice.status_code == 404
        assert blobs(family) == before_blobs
        assert c.get(f"{API}/stats").json()["total"] == before
