"""Job stores: where job records live."""

from .base import JobStats, JobStore

__all__ = ["JobStats", "JobStore"]
