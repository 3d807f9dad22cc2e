"""What the `voiceq` CLI shows: pure formatting and arithmetic, the seed's troubleshooting
advice (chosen by the server's stable error `code`), and the progress display. No commands
and no HTTP here (cli.py has those)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, TextIO

from .client import ClientError, JobState, Stats

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_ERROR = 2
EXIT_TIMEOUT = 3

DEFAULT_WAIT_TIMEOUT_S = 600.0
DEFAULT_STUCK_AFTER_S = 120.0


# --- pure presentation and arithmetic ---------------------------------------------------------


def exit_code_for(status: str) -> int:
    """A job's final status as an exit code: completed 0, failed/cancelled 1."""
    return EXIT_OK if status == "completed" else EXIT_JOB_FAILED if status in ("failed", "cancelled") else EXIT_ERROR


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_money(dollars: float) -> str:
    """Cents for sums a person pays, more digits for the fractions of a cent that single jobs cost."""
    return f"${dollars:.2f}" if abs(dollars) >= 1 else f"${dollars:.4f}"


def format_timestamp(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def format_attempts(state: JobState) -> str:
    return f"{state.attempts}/{state.max_attempts}" if state.max_attempts else str(state.attempts)


def format_progress(state: JobState, elapsed_s: float) -> str:
    """One line: which job, where it is, for how long, and which attempt."""
    parts = [f"job {state.job_id[:8]}", f"{state.status:<10}", f"elapsed {format_duration(elapsed_s)}",
             f"attempt {format_attempts(state)}"]
    if state.status == "pending" and state.attempts > 0:
        parts.append("retrying after: " + _one_line(state.error or "a failed attempt", 80))
    elif state.status == "completed" and state.processing_time is not None:
        parts.append(f"processing {format_duration(state.processing_time)}")
    elif state.status in ("failed", "cancelled") and state.error:
        parts.append(_one_line(state.error, 120))
    return "  ".join(parts)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def seed_gpu_hours(total: int, avg_processing_time: float | None) -> float:
    """The seed's monitoring formula: total jobs x average processing time, in hours."""
    return total * (avg_processing_time or 0.0) / 3600.0


def cost_at(gpu_hours: float, price_per_hour: float) -> float:
    return gpu_hours * price_per_hour


@dataclass(frozen=True)
class CostView:
    gpu_hours: float  # the server's: summed GPU shares (each job's part of its engine pass)
    gpu_seconds: float | None  # the same in seconds; None from a server that does not report it
    price_per_hour: float
    estimated_cost: float
    seed_gpu_hours: float  # total x avg, as the seed computes it
    seed_estimated_cost: float


def cost_view(stats: Stats, price_per_hour: float | None) -> CostView:
    """Cost at `price_per_hour`, or at the server's configured price when not given."""
    price = price_per_hour if price_per_hour is not None else (stats.gpu_hourly_price or 0.0)
    seed_hours = seed_gpu_hours(stats.total, stats.avg_processing_time)
    if price_per_hour is None and stats.estimated_cost is not None:
        estimated = stats.estimated_cost
    else:
        estimated = cost_at(stats.gpu_hours, price)
    gpu_seconds = stats.body.get("gpuSeconds")
    return CostView(gpu_hours=stats.gpu_hours,
                    gpu_seconds=float(gpu_seconds) if isinstance(gpu_seconds, (int, float)) else None,
                    price_per_hour=price, estimated_cost=estimated,
                    seed_gpu_hours=seed_hours, seed_estimated_cost=cost_at(seed_hours, price))


# The seed's troubleshooting messages, and what to do about each with this design.
TROUBLESHOOTING: dict[str, tuple[str, ...]] = {
    "voiceq API not reachable": (
        "start the app: `serve run serve_app:app` (or a config from cluster_configs/)",
        "check --api-url / VOICEQ_API_URL and that nothing blocks the port",
    ),
    "Convex not reachable": (
        "check CONVEX_URL and CONVEX_DEPLOY_KEY, and that the Convex deployment is running",
        "without CONVEX_URL jobs live in SQLite under VOICEQ_DATA_DIR",
    ),
    "Job store not reachable": (
        "without CONVEX_URL: check that VOICEQ_DATA_DIR is on a writable disk",
        "with CONVEX_URL (\"Convex not reachable\"): check CONVEX_URL, CONVEX_DEPLOY_KEY and the Convex deployment",
    ),
    "Audio storage not reachable": (
        "check S3_BUCKET, S3_ENDPOINT_URL and the AWS credentials (or that VOICEQ_DATA_DIR is writable)",
    ),
    "Chatterbox not running": (
        "check the VoiceCloneInference replicas with `serve status` and their logs",
        "the model loads from CHATTERBOX_CKPT_DIR or the Hugging Face hub: check it is reachable",
        "with CHATTERBOX_MODE=remote a replica needs a GPU node: check `ray status` and the autoscaler log",
    ),
    "Job stuck in pending": (
        "check that an inference replica is running and claiming: `serve status`, its logs (event=claimed)",
        "in production a GPU droplet takes minutes to boot: check `ray status` and the autoscaler log",
        "check the job store's logs and the job's record (`voiceq status JOB_ID`)",
    ),
    "Processing timeout": (
        "wait longer (--timeout) or raise VOICEQ_DEV_TIMEOUT_S for long sample texts",
        "check the inference replica's GPU memory and logs",
        "verify the audio file: 1-60 s of mp3/wav/ogg/flac/m4a/webm",
    ),
    "API key required": ("pass --api-key or set VOICEQ_API_KEY (keys are configured with VOICEQ_API_KEYS)",),
}


# The stable error codes (the API's shared vocabulary, plus the client's own `unreachable`,
# `timeout` and `stuck_pending`) that have advice, and its headline.
HEADLINE_BY_CODE: dict[str, str] = {
    "unreachable": "voiceq API not reachable",
    "store_unavailable": "Job store not reachable",
    "storage_unavailable": "Audio storage not reachable",
    "service_unavailable": "Chatterbox not running",
    "stuck_pending": "Job stuck in pending",
    "timeout": "Processing timeout",
    "unauthorized": "API key required",
}


def _lines(headline: str) -> list[str]:
    return [f'"{headline}"'] + [f"  - {action}" for action in TROUBLESHOOTING[headline]]


def troubleshooting(what: ClientError | str) -> list[str]:
    """The seed's headline for an error, and what to do, as printable lines. An error is matched
    by its stable `code`; a string may be a code or a seed headline (scripts name the advice
    they want, e.g. troubleshooting("Processing timeout"))."""
    if isinstance(what, ClientError):
        headline = HEADLINE_BY_CODE.get(what.code)
        return _lines(headline) if headline else []
    if what in HEADLINE_BY_CODE:
        return _lines(HEADLINE_BY_CODE[what])
    for headline in TROUBLESHOOTING:
        if what.startswith(headline) or headline.lower() in what.lower():
            return _lines(headline)
    return []


class Progress:
    """Progress of one job on a stream: one line rewritten in place on a terminal; on anything
    else (logs, CI, pipes) a plain line each time the status or attempt changes, and a
    heartbeat line every `heartbeat_s`."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 heartbeat_s: float = 30.0, started_at: float | None = None, indent: str = "") -> None:
        self.stream = stream
        self.indent = indent
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.started_at = clock() if started_at is None else started_at
        self.heartbeat_s = heartbeat_s
        self._last_key: tuple[str, int] | None = None
        self._last_print = -1e18
        self._width = 0

    def elapsed(self) -> float:
        return self.clock() - self.started_at

    def update(self, state: JobState) -> None:
        line = self.indent + format_progress(state, self.elapsed())
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            key = (state.status, state.attempts)
            now = self.clock()
            if key == self._last_key and now - self._last_print < self.heartbeat_s:
                return
            self.stream.write(line + "\n")
            self._last_key, self._last_print = key, now
        self.stream.flush()

    def note(self, text: str) -> None:
        """A message between progress updates (e.g. a stuck-job warning)."""
        if self.tty and self._width:
            self.stream.write("\n")
            self._width = 0
        self.stream.write(self.indent + text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


class StuckWatch:
    """Notices a job that stays pending past `after_s` with no attempt made (the seed's
    "Job stuck in pending"); reports once."""

    def __init__(self, after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self.clock = clock
        self._pending_since: float | None = None
        self.reported = False

    def check(self, state: JobState) -> bool:
        """True once, the first time the job has been pending too long."""
        if state.status != "pending":
            self._pending_since = None
            return False
        now = self.clock()
        if self._pending_since is None:
            self._pending_since = now
        if not self.reported and now - self._pending_since >= self.after_s:
            self.reported = True
            return True
        return False


def describe_job(state: JobState) -> list[str]:
    rows: list[tuple[str, str]] = [
        ("job", state.job_id),
        ("status", state.status),
        ("voice", f"{state.voice_name or '-'} ({state.voice_id or 'no voice id yet'})"),
        ("attempts", format_attempts(state)),
        ("created", format_timestamp(state.created_at)),
        ("queue wait", format_duration(state.queue_wait_s)),
        ("processing", format_duration(state.processing_time)),
    ]
    if state.completed_at is not None:
        rows.append(("completed", format_timestamp(state.completed_at)))
    if state.worker_info:
        rows.append(("worker", ", ".join(f"{k}={v}" for k, v in state.worker_info.items())))
    if state.result_url:
        rows.append(("result", state.result_url))
    if state.error:
        rows.append(("error", _one_line(state.error, 300)))
    if state.status == "pending" and state.next_attempt_at:
        rows.append(("next attempt", format_timestamp(state.next_attempt_at)))
    return [f"{name:<11} {value}" for name, value in rows]


