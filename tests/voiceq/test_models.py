"""The family's catalogue and its request rules, the per-model queue in the SQLite store,
and the worker's per-model voices: pure functions and a real SQLite file, no model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from serve_app.family import build_conversion, conversion_form, model_choice
from serve_app.validation import build_submission
from tests.support.audio import voice_file
from voiceq.errors import InvalidInput
from voiceq.jobs import Job, WorkerInfo, new_job
from voiceq.models import MODELS, MULTILINGUAL_LANGUAGES, ModelChoiceError, check_choice
from voiceq.scaling import QueueSnapshot
from voiceq.settings import Settings
from voiceq.store.sqlite import SQLiteJobStore
from voiceq.worker import generation_params

ALL = "chatterbox,chatterbox-turbo,chatterbox-multilingual"
WORKER = WorkerInfo(environment="development", gpu_type="cpu", worker_id="w")


def test_languages_are_upstreams():
    from chatterbox.mtl_tts import SUPPORTED_LANGUAGES

    assert MULTILINGUAL_LANGUAGES == SUPPORTED_LANGUAGES


@pytest.mark.parametrize("model, language, params, field", [
    ("chatterbox-xl", None, {}, "model"),
    ("chatterbox", "fr", {}, "language"),
    ("chatterbox-turbo", "en", {}, "language"),
    ("chatterbox-multilingual", None, {}, "language"),
    ("chatterbox-multilingual", "xx", {}, "language"),
    ("chatterbox-turbo", None, {"cfg_weight": 0.5}, "cfg_weight"),
    ("chatterbox-turbo", None, {"exaggeration": 0.5, "temperature": 0.7}, "exaggeration"),
])
def test_check_choice_names_the_problem(model, language, params, field):
    with pytest.raises(ModelChoiceError) as err:
        check_choice(model, language, params)
    assert err.value.field == field


def test_check_choice_refuses_an_unserved_model_by_name():
    with pytest.raises(ModelChoiceError) as err:
        check_choice("chatterbox-multilingual", "fr", {}, served=("chatterbox",))
    assert err.value.field == "model" and "serves chatterbox" in err.value.message


def test_check_choice_accepts_what_each_model_takes():
    assert check_choice("chatterbox", None, {"cfg_weight": 0.2}).name == "chatterbox"
    assert check_choice("chatterbox-turbo", None, {"temperature": 0.5, "seed": 3}).name == "chatterbox-turbo"
    for language in MULTILINGUAL_LANGUAGES:
        check_choice("chatterbox-multilingual", language, {"exaggeration": 0.9})


def test_submission_carries_model_and_language_and_refuses_unserved_models(tmp_path: Path):
    served = Settings(data_dir=tmp_path, models=ALL)
    wav = voice_file("wav", seconds=5.5)
    sub = build_submission({"user_id": "u", "voice_name": "v", "model": "chatterbox-multilingual",
                            "language": "FR"}, wav, served)
    assert (sub.model, sub.language, sub.kind) == ("chatterbox-multilingual", "fr", "clone")
    assert build_submission({"user_id": "u", "voice_name": "v"}, wav, served).model == "chatterbox"
    english_only = Settings(data_dir=tmp_path)
    with pytest.raises(InvalidInput) as err:
        build_submission({"user_id": "u", "voice_name": "v", "model": "chatterbox-turbo"}, wav, english_only)
    assert err.value.field == "model" and "not served" in err.value.message
    with pytest.raises(InvalidInput) as err:  # Turbo's reference minimum, before anything is stored
        build_submission({"user_id": "u", "voice_name": "v", "model": "chatterbox-turbo"},
                         voice_file("wav", seconds=4.0), served)
    assert err.value.field == "audio_file"
    assert model_choice({"model": "chatterbox-turbo"}, {}, served) == ("chatterbox-turbo", None)


def test_conversion_form_and_submission(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, models=ALL)
    with pytest.raises(InvalidInput) as err:
        conversion_form({"user_id": "u", "language": "fr"})
    assert err.value.field == "language"
    fields = conversion_form({"user_id": "u", "voice_id": "voice_" + "a" * 16, "seed": "5"})
    base = build_submission(fields, None, settings)
    sub = build_conversion(voice_file("wav", seconds=2.0), settings, base=base)
    assert (sub.kind, sub.model, sub.voice_id, sub.params, sub.sample_text) == (
        "convert", "chatterbox", "voice_" + "a" * 16, {"seed": 5}, "")
    assert sub.source_audio and sub.source_audio[:4] == b"RIFF"
    with pytest.raises(InvalidInput) as err:
        build_conversion(None, settings, base=base)
    assert err.value.field == "source_audio"
    with pytest.raises(InvalidInput) as err:
        build_conversion(b"not audio at all", settings, base=base)
    assert err.value.field == "source_audio" and "source_audio" in err.value.message
    with pytest.raises(InvalidInput):
        build_conversion(voice_file("wav", seconds=2.0), Settings(data_dir=tmp_path, models="chatterbox-turbo"),
                         base=base)


def test_models_setting():
    assert Settings(models=" chatterbox-turbo, chatterbox ,chatterbox-turbo").served_models == (
        "chatterbox-turbo", "chatterbox")
    for bad in ("", "chatterbox,gpt5"):
        with pytest.raises(ValueError):
            Settings(models=bad)
    env = Settings.from_env({"VOICEQ_MODELS": ALL, "CHATTERBOX_TURBO_CKPT_DIR": "/tmp/t"})
    assert env.served_models == tuple(MODELS) and env.checkpoint_dir_for("chatterbox-turbo") == Path("/tmp/t")


def job(model: str, t: float, **kw) -> Job:
    return new_job(job_id=f"00000000-0000-4000-8000-{int(t * 10):012d}", user_id="u", voice_name="v",
                   sample_text="hi", audio_key="uploads/x.wav", audio_seconds=6.0, now=t, model=model, **kw)


def test_each_model_claims_its_own_queue_and_is_counted_apart(tmp_path: Path):
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
    store.create(job("chatterbox", 1.0))
    store.create(job("chatterbox-turbo", 2.0))
    store.create(job("chatterbox-multilingual", 3.0, language="fr"))
    store.create(job("chatterbox-turbo", 4.0))
    claimed = store.claim(worker=WORKER, limit=10, lease_s=30, now=10.0, model="chatterbox-turbo")
    assert [j.created_at for j in claimed] == [2.0, 4.0]
    assert store.claim(worker=WORKER, limit=10, lease_s=30, now=10.0, model="chatterbox-turbo") == []
    stats = store.stats()
    assert (stats.pending_for("chatterbox"), stats.pending_for("chatterbox-multilingual")) == (1, 1)
    assert stats.processing_for("chatterbox-turbo") == 2
    snap = QueueSnapshot.from_stats(stats, now=13.0, model="chatterbox-multilingual")
    assert (snap.pending, snap.processing, snap.oldest_pending_age_s) == (1, 0, 10.0)
    assert QueueSnapshot.from_stats(stats, now=13.0).pending == 2  # the whole queue, as before
    french = store.claim(worker=WORKER, limit=10, lease_s=30, now=10.0, model="chatterbox-multilingual")
    assert french[0].language == "fr" and store.get(french[0].job_id).model == "chatterbox-multilingual"


def test_a_store_file_from_before_the_family_gains_the_model_column(tmp_path: Path):
    path = tmp_path / "old.sqlite3"
    old = job("chatterbox", 1.0).to_dict()
    for key in ("model", "language", "kind"):
        old.pop(key)
    with sqlite3.connect(path) as conn:
        conn.executescript("""CREATE TABLE jobs (job_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, owner TEXT,
            idempotency_key TEXT, status TEXT NOT NULL, priority INTEGER NOT NULL, created_at REAL NOT NULL,
            next_attempt_at REAL NOT NULL, lease_expires_at REAL, data TEXT NOT NULL);""")
        conn.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?)",
                     (old["job_id"], "u", None, None, "pending", 0, 1.0, 1.0, None, json.dumps(old)))
    store = SQLiteJobStore(path)
    got = store.claim(worker=WORKER, limit=5, lease_s=30, now=5.0, model="chatterbox")
    assert [(j.model, j.kind, j.language) for j in got] == [("chatterbox", "clone", None)]


def test_generation_params_take_the_models_upstream_defaults():
    turbo = generation_params(job("chatterbox-turbo", 1.0, extra={"params": {"temperature": 0.6}}))
    assert (turbo.top_p, turbo.top_k, turbo.temperature) == (0.95, 1000, 0.6)
    mtl = generation_params(job("chatterbox-multilingual", 1.0))
    assert mtl.repetition_penalty == 2.0
    english = generation_params(job("chatterbox", 1.0, extra={"params": {"repetition_penalty": 1.5}}))
    assert (english.repetition_penalty, english.top_k, english.top_p) == (1.5, 0, 1.0)
