"""Listing and deleting one thing's blobs by prefix, on the local folder and on S3 alike."""

from __future__ import annotations

import pytest

from tests.voiceq.storage.test_contract import aws_env, kind, storage  # noqa: F401  (fixtures)
from voiceq.storage import BlobStorage, result_key, results_prefix, upload_key, voice_key, voice_prefix

JOB = "6f1c1b7e-3f1e-4a7b-9a53-2f4a8d1c0b9e"
OTHER_JOB = "7a2d2c8f-4f2e-4b8c-8b64-3a5b9e2d1cad"
VOICE = "voice_0123456789abcdef"
OTHER_VOICE = "voice_fedcba9876543210"


def test_a_voices_blobs_are_listed_and_deleted_by_prefix_and_nothing_else(storage: BlobStorage) -> None:
    mine = [voice_key(VOICE), f"voices/{VOICE}/turbo.pt", f"voices/{VOICE}-multilingual.pt"]
    others = [voice_key(OTHER_VOICE), upload_key(JOB), result_key(JOB, "l1")]
    for key in mine + others:
        storage.put(key, key.encode(), content_type="application/octet-stream")

    assert storage.list_prefix(voice_prefix(VOICE)) == sorted(mine)
    assert storage.delete_prefix(voice_prefix(VOICE)) == 3
    assert storage.list_prefix(voice_prefix(VOICE)) == []
    assert all(storage.exists(k) for k in others) and not any(storage.exists(k) for k in mine)
    assert storage.delete_prefix(voice_prefix(VOICE)) == 0  # idempotent


def test_every_attempts_result_of_a_job_goes_with_its_prefix(storage: BlobStorage) -> None:
    keys = [result_key(JOB, "lease1"), result_key(JOB, "lease2"), result_key(OTHER_JOB, "lease1")]
    for key in keys:
        storage.put(key, b"mp3", content_type="audio/mpeg")
    assert storage.delete_prefix(results_prefix(JOB)) == 2
    assert storage.list_prefix("results/" + OTHER_JOB[:8]) == [keys[2]]


@pytest.mark.parametrize("prefix", ["voices", "voices/", "", "../etc", "voices/a/b", "voices/*"])
def test_a_prefix_names_one_thing_never_a_folder(storage: BlobStorage, prefix: str) -> None:
    with pytest.raises(ValueError):
        storage.delete_prefix(prefix)
