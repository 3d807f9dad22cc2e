"""Open the job store and blob storage that the settings name.

SQLite and a local folder when nothing is configured; Convex when CONVEX_URL is set; S3 when
S3_BUCKET is set. Nothing else in voiceq picks an implementation.
"""

from __future__ import annotations

from .jobs import RetryPolicy
from .settings import Settings
from .storage import BlobStorage
from .store import JobStore


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.max_attempts, base_delay_s=settings.retry_base_s,
                       max_delay_s=settings.retry_max_s)


def open_job_store(settings: Settings) -> JobStore:
    if settings.convex_url:
        from convex_client.store import ConvexJobStore

        return ConvexJobStore.from_settings(settings)
    from .store.sqlite import SQLiteJobStore

    return SQLiteJobStore(settings.sqlite_path, retry=retry_policy(settings), busy_timeout_s=settings.store_timeout_s)


def open_blob_storage(settings: Settings) -> BlobStorage:
    if settings.s3_bucket:
        from .storage.s3 import S3BlobStorage

        return S3BlobStorage.from_settings(settings)
    from .storage.local import LocalBlobStorage

    return LocalBlobStorage(settings.blob_dir)
