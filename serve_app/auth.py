"""API keys: `Authorization: Bearer <key>` on every route but the health checks.

Keys come from `VOICEQ_API_KEYS` as `name:key[:admin][:active=N][:daily=N][:priority=N]`
entries (the options are the key's own quotas, voiceq/quotas.py). Only their SHA-256 digests are
kept in memory and compared in constant time; the name (never the key) is what gets recorded
as a job's owner and written to logs. A job is visible only to its owner's key (and admin
keys); to any other key it does not exist (404), so ids cannot be probed. Job ids are random
UUID4s (122 random bits) as well, so they cannot be guessed.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from voiceq.errors import VoiceqError
from voiceq.jobs import Job
from voiceq.quotas import UNLIMITED, KeyLimits, parse_limit_options
from voiceq.settings import Settings


class Unauthorized(VoiceqError):
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Forbidden(VoiceqError):
    code = "forbidden"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Principal:
    name: str
    admin: bool = False
    limits: KeyLimits = KeyLimits()


ANONYMOUS = Principal(name="", admin=True, limits=UNLIMITED)  # auth off: everyone may do everything


@dataclass(frozen=True)
class Keyring:
    required: bool
    digests: tuple[tuple[bytes, Principal], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        entries = []
        for raw in filter(None, (e.strip() for e in settings.api_keys.split(","))):
            parts = raw.split(":")
            if len(parts) < 2 or not parts[0] or not parts[1]:
                raise ValueError("VOICEQ_API_KEYS entries must look like name:key or name:key:admin "
                                 "(options: active=N, daily=N, priority=N)")
            admin, limits = parse_limit_options(parts[2:])
            entries.append((_digest(parts[1]), Principal(name=parts[0], admin=admin, limits=limits)))
        return cls(required=settings.auth_required, digests=tuple(entries))

    def authenticate(self, authorization: str | None) -> Principal:
        if not self.required:
            return ANONYMOUS
        if not authorization:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("malformed Authorization header: expected Bearer <key>")
        digest = _digest(token.strip())
        found = None
        for known, principal in self.digests:
            if hmac.compare_digest(known, digest):  # check every key: timing does not reveal which matched
                found = principal
        if found is None:
            raise Unauthorized("invalid API key")
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def owner_of(principal: Principal) -> str | None:
    return principal.name or None


def can_see(principal: Principal, job: Job) -> bool:
    return principal.admin or job.owner == principal.name


def require_admin(principal: Principal) -> None:
    if not principal.admin:
        raise Forbidden("this operation needs an admin API key")

