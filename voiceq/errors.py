"""Typed errors that carry intent: who is at fault, and whether trying again can help.

The HTTP layer maps them to status codes; the worker maps them to job transitions
(`JobFailed(transient=True)` puts a job back in the queue with a backoff, a
permanent one fails it at once).
"""

from __future__ import annotations


def _restore(cls: type, args: tuple, state: dict) -> BaseException:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class VoiceqError(Exception):
    """Base of every error voiceq raises on purpose.

    `code` is the error's stable name in HTTP error bodies (`{"success": false, "error": ...,
    "code": ...}`): clients match on it, never on the message, which may be reworded."""

    code = "internal_error"

    def __reduce__(self) -> tuple:
        # These errors cross process boundaries (Ray handles) on their way to the HTTP layer;
        # default pickling would call __init__(*args) and lose keyword-only arguments.
        return (_restore, (type(self), self.args, self.__dict__))


# The stable code of a refused input, by its status (an explicit `code=` wins).
_INPUT_CODES = {403: "forbidden", 413: "payload_too_large", 415: "unsupported_media_type"}


class InvalidInput(VoiceqError):
    """The client sent something we will not process. Nothing has been stored."""

    def __init__(self, message: str, *, field: str | None = None, status_code: int = 400,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status_code = status_code
        self.code = code or _INPUT_CODES.get(status_code, "invalid_input")


class IdempotencyKeyReused(InvalidInput):
    """The Idempotency-Key of an earlier request came with a different request (422, as the
    IETF idempotency-key draft and Stripe answer it)."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used with a different request; use a new key for a new request",
            field="Idempotency-Key", status_code=422, code="idempotency_key_reused",
        )


class JobNotFound(VoiceqError):
    code = "job_not_found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class VoiceNotFound(VoiceqError):
    code = "voice_not_found"

    def __init__(self, voice_id: str) -> None:
        super().__init__(f"no voice with id {voice_id!r}")
        self.voice_id = voice_id


class StaleLease(VoiceqError):
    """A worker tried to change a job it no longer holds (its lease expired and the job
    was claimed again, cancelled, or already finished). The newer state wins."""

    code = "invalid_transition"


class InvalidTransition(VoiceqError):
    """A state change that the job state machine does not allow (e.g. cancelling a completed job)."""

    code = "invalid_transition"


class StoreUnavailable(VoiceqError):
    """The job store (SQLite file or Convex deployment) cannot be reached or refused the call."""

    code = "store_unavailable"


class ServiceUnavailable(VoiceqError):
    """A part of voiceq itself (a deployment being restarted) cannot take the call right now."""

    code = "service_unavailable"


class StorageUnavailable(VoiceqError):
    """Blob storage (local folder or S3 bucket) cannot be reached or refused the call."""

    code = "storage_unavailable"


class BlobNotFound(VoiceqError):
    code = "result_gone"  # answered 410: the result existed and has been swept or erased

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob at {key!r}")
        self.key = key


class JobFailed(VoiceqError):
    """Processing a job failed. `transient` says whether another attempt may succeed;
    `defer_s` optionally asks for a specific delay before that attempt."""

    def __init__(self, message: str, *, transient: bool, defer_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.defer_s = defer_s


class QueueFull(VoiceqError):
    """Backpressure: the queue is at its bound, overall (503: the service is busy) or for one
    user (429: that user is sending too much)."""

    def __init__(self, message: str, *, retry_after_s: int, per_user: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.per_user = per_user

    @property
    def status_code(self) -> int:
        return 429 if self.per_user else 503

    @property
    def code(self) -> str:  # type: ignore[override]
        return "rate_limited" if self.per_user else "queue_full"

