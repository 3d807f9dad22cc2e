from __future__ import annotations

from pathlib import Path

import pytest

from voiceq.settings import Settings


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
