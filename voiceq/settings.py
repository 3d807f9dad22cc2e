"""Settings from the seed's environment variables, with embedded defaults when unset.

Nothing here opens a connection: `Settings` is a plain value that the app builder reads once
on the driver and hands to every deployment, so all replicas agree on it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .jobs import RetryPolicy

ENVIRONMENTS = ("development", "production")
CHATTERBOX_MODES = ("local", "remote")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "voiceq"


@dataclass(frozen=True)
class Settings:
    # The seed's variables.
    environment: str = "development"
    convex_url: str | None = None
    convex_deploy_key: str | None = field(default=None, repr=False)
    s3_bucket: str | None = None
    chatterbox_mode: str = "local"

    # Where the embedded stores live.
    data_dir: Path = field(default_factory=default_data_dir)

    # S3-compatible storage (DigitalOcean Spaces, MinIO, AWS).
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_prefix: str = ""
    s3_access_key_id: str | None = field(default=None, repr=False)  # else boto3's usual chain
    s3_secret_access_key: str | None = field(default=None, repr=False)

    # The model.
    chatterbox_ckpt_dir: Path | None = None
    chatterbox_device: str = "auto"
    max_speech_tokens: int = 1000
    t3_dtype: str = "float32"  # VOICEQ_T3_DTYPE: bfloat16 loads T3 in bf16 on a GPU (voiceq/engine/precision.py)
    # The Chatterbox family (voiceq.models): which models this deployment serves, each its own
    # inference deployment, and where their checkpoints are (unset: the model hub).
    models: str = "chatterbox"  # VOICEQ_MODELS, comma-separated
    chatterbox_turbo_ckpt_dir: Path | None = None
    chatterbox_multilingual_ckpt_dir: Path | None = None

    # The queue.
    store_timeout_s: float = 10.0  # a job-store call that cannot finish in this long fails (503)
    lease_s: float = 120.0
    max_attempts: int = 3
    retry_base_s: float = 2.0  # backoff before a failed job's next attempt doubles from here
    retry_max_s: float = 300.0
    max_batch_size: int = 8
    batch_wait_s: float = 0.25  # how long a short batch waits for company
    token_budget: int = 8000  # estimated speech tokens per engine pass
    poll_interval_s: float = 1.0
    dev_timeout_s: float = 600.0
    # How long a stopping replica (Ctrl-C, a redeploy, a scale-down) finishes what it holds;
    # a batch still running then is left to its leases, which return its jobs to the queue.
    shutdown_grace_s: float = 5.0

    # Uploads.
    max_upload_bytes: int = 20 * 1024 * 1024
    min_audio_s: float = 1.0
    max_audio_s: float = 60.0
    max_text_chars: int = 1000
    max_name_chars: int = 100

    # Inference replicas.
    inference_replicas: int = 1  # fixed replica count, unless autoscaling
    inference_num_cpus: float = 1.0
    autoscale: bool = False  # replicas from the job queue (always on with CHATTERBOX_MODE=remote)

    # Backpressure: jobs pending or running, overall and per user.
    max_active_jobs: int = 10_000
    max_active_jobs_per_user: int = 50

    # Access. "auto": API keys required in production, not in development.
    auth: str = "auto"
    api_keys: str = field(default="", repr=False)  # "name:key[:admin],..."
    webhook_secret: str = field(default="", repr=False)
    webhook_allow_private: bool = False  # allow callbacks to loopback/private addresses (tests, on-prem)

    # Costs.
    gpu_hourly_price: float = 1.99
    # A Ray cluster config whose GPU node types (price, jobs_per_s) make the fleet of sizes the
    # queue policy chooses from (remote mode); unset: one inference deployment, any GPU.
    fleet_config: str | None = None

    # Voices and personal data (voiceq/voices.py). Retention: uploads and results older than
    # this many days are swept (0: kept); voices stay until deleted.
    retention_days: float = 0.0
    retention_sweep_interval_s: float = 3600.0
    require_consent: bool = False  # clone requests must carry a consent attestation
    # Per API key (overridable per key in VOICEQ_API_KEYS): so that rotating user_id cannot fill
    # the queue. 0: no daily bound.
    max_active_jobs_per_key: int = 1000
    max_jobs_per_day_per_key: int = 0

    def __post_init__(self) -> None:
        problems = settings_problems(self)
        if problems:
            raise SettingsError(problems)

    @property
    def served_models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.strip() for m in self.models.split(",") if m.strip()))

    def checkpoint_dir_for(self, model: str) -> Path | None:
        return {"chatterbox-turbo": self.chatterbox_turbo_ckpt_dir,
                "chatterbox-multilingual": self.chatterbox_multilingual_ckpt_dir}.get(model, self.chatterbox_ckpt_dir)

    @property
    def auth_required(self) -> bool:
        return self.auth == "required" or (self.auth == "auto" and self.production)

    @property
    def retry_policy(self) -> RetryPolicy:
        """How failed jobs are retried, for whichever job store the settings name."""
        return RetryPolicy(max_attempts=self.max_attempts, base_delay_s=self.retry_base_s,
                           max_delay_s=self.retry_max_s)

    @property
    def production(self) -> bool:
        return self.environment == "production"

    @property
    def autoscaling(self) -> bool:
        return self.autoscale or self.chatterbox_mode == "remote"

    @property
    def sqlite_path(self) -> Path:
        return Path(self.data_dir) / "jobs.sqlite3"

    @property
    def blob_dir(self) -> Path:
        return Path(self.data_dir) / "blobs"

    @property
    def job_store_kind(self) -> str:
        return "convex" if self.convex_url else "sqlite"

    @property
    def storage_kind(self) -> str:
        return "s3" if self.s3_bucket else "local"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        fields = {f.name: f for f in dataclasses.fields(cls)}
        raw_values = {f.name: env.get(env_name(f.name)) for f in fields.values()}
        for name, value in overrides.items():
            if name not in fields:
                problems.append(f"unknown setting {name!r}")
            elif value is not None:
                raw_values[name] = value
        for name, raw in raw_values.items():
            if raw is None or raw == "":
                continue
            try:
                values[name] = _parse(fields[name], raw) if isinstance(raw, str) else raw
            except ValueError as err:
                problems.append(str(err))
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()
        for key in ("chatterbox_ckpt_dir", "chatterbox_turbo_ckpt_dir", "chatterbox_multilingual_ckpt_dir"):
            if values.get(key) is not None:
                values[key] = Path(values[key]).expanduser().resolve()
        try:
            settings = cls(**values)
        except SettingsError as err:
            problems += err.problems
        if problems:  # every problem at once, not one per restart
            raise SettingsError(problems)
        return settings


# The seed's names, and the usual names of S3 settings; every other field is VOICEQ_<FIELD>.
_ENV_NAMES = {
    "environment": "ENVIRONMENT",
    "convex_url": "CONVEX_URL",
    "convex_deploy_key": "CONVEX_DEPLOY_KEY",
    "s3_bucket": "S3_BUCKET",
    "s3_endpoint_url": "S3_ENDPOINT_URL",
    "s3_region": "S3_REGION",
    "s3_prefix": "S3_PREFIX",
    "s3_access_key_id": "S3_ACCESS_KEY_ID",
    "s3_secret_access_key": "S3_SECRET_ACCESS_KEY",
    "chatterbox_mode": "CHATTERBOX_MODE",
    "chatterbox_ckpt_dir": "CHATTERBOX_CKPT_DIR",
    "chatterbox_turbo_ckpt_dir": "CHATTERBOX_TURBO_CKPT_DIR",
    "chatterbox_multilingual_ckpt_dir": "CHATTERBOX_MULTILINGUAL_CKPT_DIR",
    "chatterbox_device": "CHATTERBOX_DEVICE",
    "data_dir": "VOICEQ_DATA_DIR",
}


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    name = env_name(f.name)
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("bool"):
            word = raw.strip().lower()
            if word not in _TRUE + _FALSE:
                raise ValueError(f"{name}={raw!r} is not a boolean: use one of {', '.join(_TRUE + _FALSE)}")
            return word in _TRUE
    except ValueError as err:
        if kind.startswith("bool"):
            raise
        raise ValueError(f"{name}={raw!r} is not a valid {kind.split(' ')[0]}") from err
    return raw.strip()


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_name(field_name: str) -> str:
    return _ENV_NAMES.get(field_name, "VOICEQ_" + field_name.upper())


class SettingsError(ValueError):
    """Settings that voiceq refuses to start with; one line per problem, naming the variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# Lower bounds of numeric settings: (bound, inclusive). A value outside would not fail at once
# but later and far away (a lease that expires before it is taken, a job that never runs).
_AT_LEAST: dict[str, tuple[float, bool]] = {
    "max_speech_tokens": (1, True), "store_timeout_s": (0, False), "lease_s": (0, False),
    "max_attempts": (1, True), "retry_base_s": (0, True), "retry_max_s": (0, True),
    "max_batch_size": (1, True), "batch_wait_s": (0, True), "token_budget": (1, True),
    "poll_interval_s": (0, False), "dev_timeout_s": (0, False), "shutdown_grace_s": (0, True),
    "max_upload_bytes": (1, True), "min_audio_s": (0, True), "max_audio_s": (0, False),
    "max_text_chars": (1, True), "max_name_chars": (1, True), "inference_replicas": (1, True),
    "inference_num_cpus": (0, True), "max_active_jobs": (1, True), "max_active_jobs_per_user": (1, True),
    "gpu_hourly_price": (0, True),
    "retention_days": (0, True), "retention_sweep_interval_s": (0, False), "max_active_jobs_per_key": (1, True),
    "max_jobs_per_day_per_key": (0, True),
}


def settings_problems(settings: Settings) -> list[str]:
    """Everything wrong with these settings, one line each (pure)."""
    problems = []
    if settings.environment not in ENVIRONMENTS:
        problems.append(f"ENVIRONMENT must be one of {ENVIRONMENTS}, not {settings.environment!r}")
    if settings.chatterbox_mode not in CHATTERBOX_MODES:
        problems.append(f"CHATTERBOX_MODE must be one of {CHATTERBOX_MODES}, not {settings.chatterbox_mode!r}")
    if settings.auth not in ("auto", "required", "off"):
        problems.append(f"VOICEQ_AUTH must be auto, required or off, not {settings.auth!r}")
    if settings.t3_dtype not in ("float32", "bfloat16"):  # voiceq.engine.precision.T3_DTYPES, without torch
        problems.append(f"VOICEQ_T3_DTYPE must be float32 or bfloat16, not {settings.t3_dtype!r}")
    for name, (bound, inclusive) in _AT_LEAST.items():
        value = getattr(settings, name)
        if value < bound or (value == bound and not inclusive):
            relation = "at least" if inclusive else "more than"
            problems.append(f"{env_name(name)}={value!r}: must be {relation} {bound:g}")
    if settings.retry_max_s < settings.retry_base_s:
        problems.append(f"VOICEQ_RETRY_MAX_S={settings.retry_max_s!r}: must be at least VOICEQ_RETRY_BASE_S "
                        f"({settings.retry_base_s!r})")
    if settings.max_audio_s <= settings.min_audio_s:
        problems.append(f"VOICEQ_MAX_AUDIO_S={settings.max_audio_s!r}: must be more than VOICEQ_MIN_AUDIO_S "
                        f"({settings.min_audio_s!r})")
    from .models import MODELS

    served = settings.served_models
    if not served or any(m not in MODELS for m in served):
        problems.append(f"VOICEQ_MODELS={settings.models!r}: must name models among {', '.join(MODELS)}")
    return problems
