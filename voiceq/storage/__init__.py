"""Blob storage: where uploaded voices, prepared voice conditionals and results live."""

from .base import (BlobStorage, check_key, check_prefix, result_key, results_prefix, upload_key, voice_key,
                   voice_prefix)

__all__ = ["BlobStorage", "check_key", "check_prefix", "result_key", "results_prefix", "upload_key", "voice_key",
           "voice_prefix"]
