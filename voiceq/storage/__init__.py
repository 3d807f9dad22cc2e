"""Blob storage: where uploaded voices, prepared voice conditionals and results live."""

from .base import BlobStorage, check_key, result_key, upload_key, voice_key

__all__ = ["BlobStorage", "check_key", "result_key", "upload_key", "voice_key"]
