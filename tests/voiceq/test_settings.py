from __future__ import annotations

from pathlib import Path

import pytest

from voiceq.settings import Settings, SettingsError


def test_embedded_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    s = Settings.from_env({"VOICEQ_DATA_DIR": str(tmp_path)})
    assert s.environment == "development" and not s.production
    assert (s.job_store_kind, s.storage_kind) == ("sqlite", "local")
    assert s.sqlite_path == tmp_path / "jobs.sqlite3" and s.blob_dir == tmp_path / "blobs"


def test_the_seeds_variables_select_production_stores(tmp_path: Path) -> None:
    s = Settings.from_env({"ENVIRONMENT": "production", "CONVEX_URL": "http://127.0.0.1:3210",
                           "S3_BUCKET": "voice-clones", "CHATTERBOX_MODE": "remote",
                           "VOICEQ_MAX_SPEECH_TOKENS": "300", "VOICEQ_LEASE_S": "45.5"})
    assert s.production and s.job_store_kind == "convex" and s.storage_kind == "s3"
    assert s.chatterbox_mode == "remote" and s.max_speech_tokens == 300 and s.lease_s == 45.5


def test_bad_values_are_refused_with_the_variable_name() -> None:
    with pytest.raises(ValueError, match="ENVIRONMENT"):
        Settings.from_env({"ENVIRONMENT": "staging"})
    with pytest.raises(ValueError, match="VOICEQ_MAX_BATCH_SIZE"):
        Settings.from_env({"VOICEQ_MAX_BATCH_SIZE": "lots"})
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.from_env({}, no_such_setting="1")


def test_builder_arguments_override_the_environment() -> None:
    s = Settings.from_env({"ENVIRONMENT": "development"}, environment="production", max_batch_size="16")
    assert s.production and s.max_batch_size == 16


def test_secrets_stay_out_of_repr() -> None:
    s = Settings(convex_deploy_key="prod:secret-key")
    assert "secret-key" not in repr(s)


@pytest.mark.parametrize("environ, variable", [
    ({"VOICEQ_AUTOSCALE": "ture"}, "VOICEQ_AUTOSCALE='ture' is not a boolean"),
    ({"VOICEQ_MAX_ATTEMPTS": "0"}, "VOICEQ_MAX_ATTEMPTS=0: must be at least 1"),
    ({"VOICEQ_LEASE_S": "-5"}, "VOICEQ_LEASE_S=-5.0: must be more than 0"),
    ({"VOICEQ_MAX_AUDIO_S": "0.5"}, "VOICEQ_MAX_AUDIO_S=0.5: must be more than VOICEQ_MIN_AUDIO_S"),
])
def test_values_that_would_misbehave_later_are_refused_at_start(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(environ)
    assert [line for line in str(refused.value).splitlines() if line.startswith(variable)]


def test_every_problem_is_named_on_its_own_line() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"VOICEQ_AUTOSCALE": "ture", "VOICEQ_MAX_ATTEMPTS": "0", "VOICEQ_LEASE_S": "-5"})
    lines = str(refused.value).splitlines()
    assert len(lines) == 3 and len(refused.value.problems) == 3
    assert {line.split("=")[0] for line in lines} == {"VOICEQ_AUTOSCALE", "VOICEQ_MAX_ATTEMPTS", "VOICEQ_LEASE_S"}


@pytest.mark.parametrize("word, value", [("true", True), ("ON", True), ("1", True), ("off", False), ("No", False)])
def test_booleans_take_the_usual_words(word: str, value: bool) -> None:
    assert Settings.from_env({"VOICEQ_AUTOSCALE": word}).autoscale is value


def test_settings_built_in_code_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="VOICEQ_MAX_BATCH_SIZE=0"):
        Settings(max_batch_size=0)
