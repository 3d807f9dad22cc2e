"""The HTTP client, now in the light `voiceq_client` package (installable without Ray or
torch); imported here too so `voiceq.client` keeps working."""

from voiceq_client.client import *  # noqa: F401,F403
from voiceq_client.client import (API_PREFIX, DEFAULT_API_URL, TERMINAL_STATUSES, ApiError, ApiUnreachable,  # noqa: F401
                                  ClientError, JobState, JobSummary, Readiness, Stats, Submitted, VoiceInfo,
                                  VoiceqClient, WaitTimeout, decode_data_uri, error_from_response)
