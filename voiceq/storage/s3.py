"""Production blob storage: an S3 bucket, or any S3-compatible store (DigitalOcean Spaces,
MinIO) through S3_ENDPOINT_URL.

Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a
profile, an instance role) and are never logged. File objects are uploaded with
`upload_fileobj`, which streams them in parts instead of holding them whole in memory.
Failures say what to fix: a missing bucket, missing or refused credentials, an unreachable
endpoint.
"""

from __future__ import annotations

from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from ..errors import BlobNotFound, StorageUnavailable
from ..settings import Settings
from .base import check_key, check_prefix

_MISSING_BUCKET = {"NoSuchBucket"}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "InvalidClientTokenId",
}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_CREDENTIALS_HINT = "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the boto3 profile or role in use)"


def _normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip().strip("/")
    return f"{prefix}/" if prefix else ""


class S3BlobStorage:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_attempts: int = 3,
        multipart_chunk_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        if not bucket:
            raise ValueError("S3_BUCKET is empty")
        self.bucket = bucket
        self.prefix = _normalize_prefix(prefix)
        self.endpoint_url = endpoint_url or None
        if client is None:
            config = Config(
                signature_version="s3v4",
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
                retries={"max_attempts": max_attempts, "mode": "standard"},
                # S3-compatible stores (MinIO, local servers) address buckets by path; AWS and
                # Spaces accept it too.
                s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            )
            # Explicit keys (S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY, e.g. for Spaces) or boto3's chain.
            session = boto3.session.Session(aws_access_key_id=access_key_id or None,
                                            aws_secret_access_key=secret_access_key or None)
            client = session.client(
                "s3",
                endpoint_url=self.endpoint_url,
                region_name=region or session.region_name or "us-east-1",
                config=config,
            )
        self._s3 = client
        self._transfer = TransferConfig(
            multipart_threshold=multipart_chunk_bytes,
            multipart_chunksize=multipart_chunk_bytes,
            max_concurrency=4,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStorage:
        if not settings.s3_bucket:
            raise ValueError("S3_BUCKET is not set")
        return cls(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )

    def __repr__(self) -> str:
        return f"S3BlobStorage(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"

    # --- errors -------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"S3 bucket {self.bucket!r}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def _unavailable(self, action: str, err: Exception) -> StorageUnavailable:
        if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
            return StorageUnavailable(f"cannot {action}: no usable S3 credentials were found; {_CREDENTIALS_HINT}")
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _MISSING_BUCKET:
                return StorageUnavailable(
                    f"cannot {action}: the {self._where} does not exist; create it or fix S3_BUCKET"
                )
            if code in _BAD_CREDENTIALS or status == 403:
                return StorageUnavailable(
                    f"cannot {action}: the {self._where} refused the credentials ({code or status}); {_CREDENTIALS_HINT}"
                )
            return StorageUnavailable(f"cannot {action} in the {self._where}: {code or status}: {err}")
        if isinstance(err, BotoConnectionError):
            return StorageUnavailable(f"cannot {action}: the {self._where} is not reachable ({type(err).__name__})")
        return StorageUnavailable(f"cannot {action} in the {self._where}: {type(err).__name__}: {err}")

    def _bucket_missing(self) -> bool:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            return str(err.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket")
        except BotoCoreError:
            return False
        return False

    def _object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    # --- BlobStorage --------------------------------------------------------------------

    def ping(self) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                raise StorageUnavailable(f"the {self._where} does not exist; create it or fix S3_BUCKET") from err
            raise self._unavailable("reach the bucket", err) from err
        except BotoCoreError as err:
            raise self._unavailable("reach the bucket", err) from err

    def put(self, key: str, data: bytes | BinaryIO, *, content_type: str) -> None:
        object_key = self._object_key(key)
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                self._s3.put_object(Bucket=self.bucket, Key=object_key, Body=bytes(data), ContentType=content_type)
            else:
                self._s3.upload_fileobj(
                    data, self.bucket, object_key, ExtraArgs={"ContentType": content_type}, Config=self._transfer
                )
        except (ClientError, BotoCoreError) as err:
            raise self._unavailable(f"write {key}", err) from err
        except Exception as err:
            # upload_fileobj wraps failures of its worker threads (e.g. S3UploadFailedError).
            cause = err.__cause__ or err.__context__
            if isinstance(cause, (ClientError, BotoCoreError)):
                raise self._unavailable(f"write {key}", cause) from err
            if type(err).__name__ == "S3UploadFailedError":
                raise StorageUnavailable(f"cannot write {key} to the {self._where}: {err}") from err
            raise

    def get(self, key: str) -> bytes:
        object_key = self._object_key(key)
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=object_key)
            with response["Body"] as body:
                return body.read()
        except ClientError as err:
            if str(err.response.get("Error", {}).get("Code", "")) in _MISSING_KEY:
                raise BlobNotFound(key) from err
            raise self._unavailable(f"read {key}", err) from err
        except BotoCoreError as err:
            raise self._unavailable(f"read {key}", err) from err

    def exists(self, key: str) -> bool:
        object_key = self._object_key(key)
        try:
            self._s3.head_object(Bucket=self.bucket, Key=object_key)
            return True
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_KEY:
                # A HEAD has no body: a 404 may also mean the bucket is gone, which must not
                # pass for "no such blob".
                if self._bucket_missing():
                    raise StorageUnavailable(
                        f"cannot look up {key}: the {self._where} does not exist; create it or fix S3_BUCKET"
                    ) from err
                return False
            raise self._unavailable(f"look up {key}", err) from err
        except BotoCoreError as err:
            raise self._unavailable(f"look up {key}", err) from err

    def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=object_key)
        except (ClientError, BotoCoreError) as err:
            raise self._unavailable(f"delete {key}", err) from err

    def list_prefix(self, prefix: str) -> list[str]:
        start = self.prefix + check_prefix(prefix)
        keys: list[str] = []
        try:
            for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
                keys += [obj["Key"][len(self.prefix):] for obj in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as err:
            raise self._unavailable(f"list {prefix}", err) from err
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_prefix(prefix)
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = [{"Key": self.prefix + k} for k in keys[i:i + 1000]]
            try:
                reply = self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
            except (ClientError, BotoCoreError) as err:
                raise self._unavailable(f"delete {prefix}", err) from err
            if reply.get("Errors"):
                first = reply["Errors"][0]
                raise StorageUnavailable(f"cannot delete {first.get('Key')} in the {self._where}: {first.get('Code')}")
        return len(keys)

    def presigned_url(self, key: str, *, expires_s: int = 3600) -> str | None:
        object_key = self._object_key(key)
        try:
            return str(
                self._s3.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": object_key}, ExpiresIn=int(expires_s)
                )
            )
        except (ClientError, BotoCoreError) as err:
            raise self._unavailable(f"sign a URL for {key}", err) from err
