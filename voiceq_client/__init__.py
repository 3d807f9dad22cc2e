"""voiceq's light client: the HTTP client (blocking and asyncio) and the `voiceq` CLI, with
httpx as the only dependency (no Ray, no torch). Installable alone from clients/python."""

from .aio import AsyncVoiceqClient
from .client import (ApiError, ApiUnreachable, ClientError, JobState, JobSummary, Readiness, Stats, Submitted,
                     VoiceInfo, VoiceqClient, WaitTimeout)

__all__ = ["ApiError", "ApiUnreachable", "AsyncVoiceqClient", "ClientError", "JobState", "JobSummary", "Readiness",
           "Stats", "Submitted", "VoiceInfo", "VoiceqClient", "WaitTimeout"]
