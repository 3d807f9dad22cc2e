"""One contract for every blob storage: the same tests against a local folder and against S3
(moto's S3 server on a local port, reached through boto3 as a real bucket would be)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.fakes import S3Server
from voiceq.errors import BlobNotFound, StorageUnavailable
from voiceq.settings import Settings
from voiceq.storage import BlobStorage, result_key, upload_key, voice_key
from voiceq.storage.local import LocalBlobStorage
from voiceq.storage.s3 import S3BlobStorage
from deployments.connections import open_blob_storage

JOB = "6f1c1b7e-3f1e-4a7b-9a53-2f4a8d1c0b9e"


@pytest.fixture
def aws_env(fake_s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    """Credentials through boto3's usual chain (the environment), and nothing from this machine."""
    for name, value in fake_s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return fake_s3


def s3_settings(server: S3Server, bucket: str, tmp_path: Path, prefix: str = "") -> Settings:
    return Settings(s3_bucket=bucket, s3_endpoint_url=server.endpoint_url, s3_region=server.region, s3_prefix=prefix,
                    data_dir=tmp_path)


@pytest.fixture(params=["local", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[BlobStorage]:
    if kind == "local":
        yield LocalBlobStorage(tmp_path / "blobs")
        return
    server: S3Server = request.getfixturevalue("aws_env")
    yield open_blob_storage(s3_settings(server, server.create_bucket(), tmp_path, prefix="voiceq"))


def test_put_bytes_then_get(storage: BlobStorage) -> None:
    storage.ping()
    key = upload_key(JOB)
    assert not storage.exists(key)
    storage.put(key, b"RIFF-one", content_type="audio/wav")
    assert storage.exists(key)
    assert storage.get(key) == b"RIFF-one"
    storage.put(key, b"RIFF-two", content_type="audio/wav")  # overwrite
    assert storage.get(key) == b"RIFF-two"


def test_put_a_file_object(storage: BlobStorage, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "upload.wav"
    path.write_bytes(data)
    with path.open("rb") as f:
        storage.put(voice_key("voice_0123456789abcdef"), f, content_type="application/octet-stream")
    storage.put(result_key(JOB, "0" * 32), io.BytesIO(b"ID3 mp3"), content_type="audio/mpeg")
    assert storage.get(voice_key("voice_0123456789abcdef")) == data
    assert storage.get(result_key(JOB, "0" * 32)) == b"ID3 mp3"


def test_missing_blobs(storage: BlobStorage) -> None:
    with pytest.raises(BlobNotFound) as caught:
        storage.get(upload_key(JOB))
    assert caught.value.key == upload_key(JOB)
    assert storage.exists(upload_key(JOB)) is False
    storage.delete(upload_key(JOB))  # deleting nothing is fine


def test_delete(storage: BlobStorage) -> None:
    key = upload_key(JOB)
    storage.put(key, b"x", content_type="audio/wav")
    storage.delete(key)
    assert not storage.exists(key)
    with pytest.raises(BlobNotFound):
        storage.get(key)


def test_keys_are_checked(storage: BlobStorage) -> None:
    for bad in ("../etc/passwd", "uploads/../../x.wav", "/abs.wav", "uploads/a b.wav"):
        with pytest.raises(ValueError):
            storage.put(bad, b"x", content_type="audio/wav")


def test_presigned_urls(storage: BlobStorage, kind: str) -> None:
    key = result_key(JOB, "a" * 32)
    storage.put(key, b"ID3 result", content_type="audio/mpeg")
    url = storage.presigned_url(key, expires_s=60)
    if kind == "local":
        assert url is None  # the API serves local blobs itself
        return
    assert url is not None and "X-Amz-Signature" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"ID3 result"
    assert response.headers["content-type"] == "audio/mpeg"


# --- S3 only: where the objects go, and clear errors --------------------------------------


def test_s3_keys_live_under_the_prefix(aws_env: S3Server, tmp_path: Path) -> None:
    bucket = aws_env.create_bucket()
    storage = S3BlobStorage.from_settings(s3_settings(aws_env, bucket, tmp_path, prefix="/team-a/voiceq/"))
    storage.put(upload_key(JOB), b"x", content_type="audio/wav")
    listed = aws_env.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"team-a/voiceq/uploads/{JOB}.wav"]
    head = aws_env.client().head_object(Bucket=bucket, Key=listed[0]["Key"])
    assert head["ContentType"] == "audio/wav"


def test_large_file_objects_are_streamed_in_parts(aws_env: S3Server, tmp_path: Path) -> None:
    bucket = aws_env.create_bucket()
    storage = S3BlobStorage(bucket, endpoint_url=aws_env.endpoint_url, region=aws_env.region,
                            multipart_chunk_bytes=5 * 1024 * 1024)

    class CountingReader(io.RawIOBase):
        """A 12 MiB upload that never exists whole in memory; records the largest read."""

        def __init__(self, size: int) -> None:
            self.left, self.largest = size, 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            n = min(len(buffer), self.left)
            self.largest = max(self.largest, n)
            buffer[:n] = b"\x01" * n
            self.left -= n
            return n

    reader = CountingReader(12 * 1024 * 1024)
    storage.put(voice_key("voice_0123456789abcdef"), io.BufferedReader(reader), content_type="application/octet-stream")
    head = aws_env.client().head_object(Bucket=bucket, Key="voices/voice_0123456789abcdef.pt")
    assert head["ContentLength"] == 12 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of three parts
    assert reader.largest <= 5 * 1024 * 1024


def test_a_missing_bucket_is_named(aws_env: S3Server, tmp_path: Path) -> None:
    storage = S3BlobStorage.from_settings(s3_settings(aws_env, "no-such-bucket-here", tmp_path))
    for call in (
        storage.ping,
        lambda: storage.put(upload_key(JOB), b"x", content_type="audio/wav"),
        lambda: storage.put(upload_key(JOB), io.BytesIO(b"x"), content_type="audio/wav"),
        lambda: storage.get(upload_key(JOB)),
        lambda: storage.exists(upload_key(JOB)),
    ):
        with pytest.raises(StorageUnavailable, match="'no-such-bucket-here'.*does not exist.*S3_BUCKET"):
            call()


def test_missing_credentials_are_named(aws_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = S3BlobStorage.from_settings(s3_settings(aws_env, aws_env.create_bucket(), tmp_path))
    with pytest.raises(StorageUnavailable, match="no usable S3 credentials.*AWS_ACCESS_KEY_ID"):
        storage.put(upload_key(JOB), b"x", content_type="audio/wav")
    with pytest.raises(StorageUnavailable, match="no usable S3 credentials"):
        storage.ping()


def test_refused_credentials_are_named(aws_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = aws_env.create_bucket()
    key_id, secret = aws_env.create_credentials()
    with aws_env.checking_credentials():
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        good = S3BlobStorage.from_settings(s3_settings(aws_env, bucket, tmp_path))
        good.put(upload_key(JOB), b"x", content_type="audio/wav")
        assert good.get(upload_key(JOB)) == b"x"

        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
        wrong_secret = S3BlobStorage.from_settings(s3_settings(aws_env, bucket, tmp_path))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
        unknown_key = S3BlobStorage.from_settings(s3_settings(aws_env, bucket, tmp_path))
        for storage in (wrong_secret, unknown_key):
            with pytest.raises(StorageUnavailable, match="refused the credentials.*AWS_ACCESS_KEY_ID") as caught:
                storage.get(upload_key(JOB))
            assert "wrong-secret" not in str(caught.value) and secret not in str(caught.value)


def test_an_unreachable_endpoint_is_named(aws_env: S3Server, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = S3BlobStorage("voices", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1", max_attempts=1,
                            connect_timeout_s=1)
    with pytest.raises(StorageUnavailable, match="not reachable"):
        storage.get(upload_key(JOB))
