"""Open the job store and blob storage that the settings name.

SQLite and a local folder when nothing is configured; Convex when CONVEX_URL is set; S3 when
S3_BUCKET is set. Nothing else in voiceq picks an implementation.
"""

from __future__ import annotations

from voiceq.settings import Settings
from voiceq.storage import BlobStorage
from voiceq.store import JobStore


def open_job_store(settings: Settings) -> JobStore:
    if settings.convex_url:
        from convex_client.store import ConvexJobStore

        return ConvexJobStore.from_settings(settings)
    from voiceq.store.sqlite import SQLiteJobStore

    return SQLiteJobStore(settings.sqlite_path, retry=settings.retry_policy, busy_timeout_s=settings.store_timeout_s)


def open_blob_storage(settings: Settings) -> BlobStorage:
    if settings.s3_bucket:
        from voiceq.storage.s3 import S3BlobStorage

        return S3BlobStorage.from_settings(settings)
    from voiceq.storage.local import LocalBlobStorage

    return LocalBlobStorage(settings.blob_dir)
