"""The `voiceq` command line.

    voiceq make-test-checkpoint DIR      random-weight Chatterbox checkpoint for offline runs and tests
    voiceq submit AUDIO --user U --name N [--text T] [--voice-id V] [--wait] [--out FILE]
    voiceq status JOB_ID
    voiceq wait JOB_ID [--timeout S] [--out FILE]
    voiceq stats [--user U] [--price-per-hour P]
    voiceq jobs --user U [--status S] [--limit N]

Global options (before or after the command): --api-url (env VOICEQ_API_URL, default
http://localhost:8000), --api-key (env VOICEQ_API_KEY), --json.
Exit codes: 0 ok, 1 job failed or cancelled, 2 usage or HTTP error, 3 timeout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from .client import (
    DEFAULT_API_URL,
    ApiError,
    ClientError,
    JobState,
    Stats,
    Submitted,
    VoiceqClient,
    WaitTimeout,
)

Command = Callable[[argparse.Namespace], int]

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
    "Job store not reachable": ("check that VOICEQ_DATA_DIR is on a writable disk",),
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


def troubleshooting(message: str) -> list[str]:
    """The seed's headline for a message, and what to do, as printable lines."""
    for headline, actions in TROUBLESHOOTING.items():
        if message.startswith(headline) or headline.lower() in message.lower():
            return [f'"{headline}"'] + [f"  - {action}" for action in actions]
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


# --- shared command plumbing -------------------------------------------------------------------


def _client(args: argparse.Namespace) -> VoiceqClient:
    return VoiceqClient(args.api_url, api_key=args.api_key or None)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _fail(message: str, code: int = EXIT_ERROR) -> int:
    print(f"error: {message}", file=sys.stderr)
    for line in troubleshooting(message):
        print(line, file=sys.stderr)
    return code


def _error_exit(err: ClientError) -> int:
    if isinstance(err, ApiError) and err.status_code == 401:
        return _fail(f"API key required: {err.message}")
    if isinstance(err, WaitTimeout):
        return _fail(err.message, EXIT_TIMEOUT)
    return _fail(str(err) if isinstance(err, ApiError) else err.message)


def wait_for(client: VoiceqClient, job_id: str, *, timeout_s: float, stream: TextIO,
             stuck_after_s: float = DEFAULT_STUCK_AFTER_S, started_at: float | None = None,
             indent: str = "") -> JobState:
    """Poll with a progress display; warns once if the job looks stuck in pending."""
    progress = Progress(stream, started_at=started_at, indent=indent)
    stuck = StuckWatch(stuck_after_s)

    def show(state: JobState) -> None:
        progress.update(state)
        if stuck.check(state):
            progress.note(f"warning: Job stuck in pending for {format_duration(stuck_after_s)}; still waiting")
            for line in troubleshooting("Job stuck in pending")[1:]:
                progress.note(line)

    try:
        return client.wait(job_id, timeout_s=timeout_s, on_progress=show)
    finally:
        progress.finish()


def _save(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


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


# --- commands ----------------------------------------------------------------------------------


def cmd_make_test_checkpoint(args: argparse.Namespace) -> int:
    from .engine.checkpoint import make_test_checkpoint

    out = make_test_checkpoint(
        args.dir, model=args.model, seed=args.seed, stop_after=args.stop_after,
        stop_position=args.stop_position, max_speech_tokens=args.max_speech_tokens,
    )
    print(f"wrote a random-weight {args.model} checkpoint to {out}")
    env = {"chatterbox": "CHATTERBOX_CKPT_DIR", "chatterbox-turbo": "CHATTERBOX_TURBO_CKPT_DIR",
           "chatterbox-multilingual": "CHATTERBOX_MULTILINGUAL_CKPT_DIR"}[args.model]
    print(f"run offline with: {env}={out} serve run serve_app:app")
    return 0


def _finish_job(client: VoiceqClient, args: argparse.Namespace, state: JobState, *,
                audio: bytes | None = None, extra: Mapping[str, Any] | None = None) -> int:
    """Report a final job, saving its MP3 to --out when completed."""
    saved: Path | None = None
    if state.status == "completed" and args.out is not None:
        saved = _save(args.out, audio if audio is not None else client.result_audio(state.job_id))
    if args.json:
        _print_json({**(extra or {}), "job": state.body, "savedTo": str(saved) if saved else None})
    else:
        for line in describe_job(state):
            print(line)
        if saved:
            print(f"{'saved':<11} {saved}")
    if state.status != "completed":
        print(f"error: job {state.job_id} {state.status}: {state.error or 'no reason given'}", file=sys.stderr)
    return exit_code_for(state.status)


def cmd_submit(args: argparse.Namespace) -> int:
    if args.audio is None and args.voice_id is None:
        return _fail("give an AUDIO file or --voice-id")
    if args.audio is not None and not args.audio.is_file():
        return _fail(f"no such audio file: {args.audio}")
    started = time.monotonic()
    wait = args.wait or args.out is not None  # a file can only be written once the job is done
    with _client(args) as client:
        try:
            submitted = client.submit(
                args.audio, user_id=args.user, voice_name=args.name, sample_text=args.text,
                voice_id=args.voice_id, priority=args.priority, idempotency_key=args.idempotency_key,
                timeout_s=args.timeout, model=args.model, language=args.language,
            )
        except ApiError as err:
            # Development answers 504 (still queued) or 503 (an attempt failed, it will be
            # retried) with the job's id, and 500 when the job failed for good.
            if err.job_id is None:
                return _error_exit(err)
            print(f"note: {err.message}", file=sys.stderr)
            if err.status_code == 500 or err.body.get("status") in ("failed", "cancelled"):
                try:
                    return _finish_job(client, args, client.status(err.job_id))
                except ClientError as inner:
                    return _error_exit(inner)
            if not wait:
                print(f"follow it with: voiceq wait {err.job_id}", file=sys.stderr)
                return EXIT_TIMEOUT if err.status_code == 504 else EXIT_ERROR
            submitted = Submitted(job_id=err.job_id, http_status=err.status_code, status="queued",
                                  status_url=err.body.get("statusUrl"), body=err.body)
        except ClientError as err:
            return _error_exit(err)

        summary = {"submit": {k: v for k, v in submitted.body.items() if k != "sample_audio"}
                   | {"httpStatus": submitted.http_status, "latencySeconds": round(submitted.latency_s, 3)}}
        if submitted.sample_audio is not None:
            summary["submit"]["sampleAudioBytes"] = len(submitted.sample_audio)
        try:
            if submitted.completed:
                return _finish_job(client, args, client.status(submitted.job_id),
                                   audio=submitted.sample_audio, extra=summary)
            if not wait:
                if args.json:
                    _print_json(summary | {"job": None, "savedTo": None})
                else:
                    print(f"job {submitted.job_id} queued")
                    print(f"status: {args.api_url.rstrip('/')}{submitted.status_url}")
                    print(f"follow it with: voiceq wait {submitted.job_id}")
                return EXIT_OK
            state = wait_for(client, submitted.job_id, timeout_s=max(1.0, args.timeout - (time.monotonic() - started)),
                             stream=sys.stderr, started_at=started)
            return _finish_job(client, args, state, extra=summary)
        except ClientError as err:
            return _error_exit(err)


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            state = client.status(args.job_id)
        except ClientError as err:
            return _error_exit(err)
    if args.json:
        _print_json(state.body)
    else:
        for line in describe_job(state):
            print(line)
    return exit_code_for(state.status) if state.terminal else EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            state = wait_for(client, args.job_id, timeout_s=args.timeout, stream=sys.stderr,
                             stuck_after_s=args.stuck_after)
            return _finish_job(client, args, state)
        except ClientError as err:
            return _error_exit(err)


def cmd_stats(args: argparse.Namespace) -> int:
    if args.price_per_hour is not None and args.price_per_hour < 0:
        return _fail("--price-per-hour must not be negative")
    with _client(args) as client:
        try:
            stats = client.stats(args.user)
        except ClientError as err:
            return _error_exit(err)
    cost = cost_view(stats, args.price_per_hour)
    if args.json:
        _print_json(stats.body | {
            "pricePerHour": cost.price_per_hour,
            "estimatedCostAtPrice": cost.estimated_cost,
            "seedGpuHours": cost.seed_gpu_hours,
            "seedEstimatedCost": cost.seed_estimated_cost,
        })
        return EXIT_OK
    who = f"user {stats.user_id}" if stats.user_id else "all users"
    print(f"{'jobs (' + who + ')':<28} {stats.total}")
    for status in ("pending", "processing", "completed", "failed", "cancelled"):
        print(f"  {status:<26} {stats.by_status.get(status, 0)}")
    for status, count in sorted(stats.by_status.items()):
        if status not in ("pending", "processing", "completed", "failed", "cancelled"):
            print(f"  {status:<26} {count}")
    print(f"{'avg processing time':<28} {format_duration(stats.avg_processing_time)}")
    if stats.audio_seconds_generated is not None:
        print(f"{'audio generated':<28} {format_duration(stats.audio_seconds_generated)}")
    if cost.gpu_seconds is not None:
        print(f"{'GPU time':<28} {format_duration(cost.gpu_seconds)}  (each job's share of its engine pass)")
    print(f"{'GPU-hours':<28} {cost.gpu_hours:.4f}")
    print(f"{'estimated cost':<28} {format_money(cost.estimated_cost)}  at ${cost.price_per_hour:.2f}/h")
    print(f"{'seed estimate':<28} {cost.seed_gpu_hours:.4f} GPU-h = total x avg / 3600"
          f"  -> {format_money(cost.seed_estimated_cost)}")
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        try:
            jobs = client.jobs(args.user, status=args.status, limit=args.limit)
        except ClientError as err:
            return _error_exit(err)
    if args.json:
        _print_json({"userId": args.user, "jobs": [j.__dict__ for j in jobs]})
        return EXIT_OK
    if not jobs:
        print(f"no jobs for user {args.user}" + (f" with status {args.status}" if args.status else ""))
        return EXIT_OK
    print(f"{'JOB ID':<36}  {'STATUS':<10}  {'CREATED':<19}  {'PROCESSING':>10}  VOICE")
    for job in jobs:
        voice = f"{job.voice_name or '-'} ({job.voice_id})" if job.voice_id else (job.voice_name or "-")
        print(f"{job.job_id:<36}  {job.status:<10}  {format_timestamp(job.created_at):<19}  "
              f"{format_duration(job.processing_time):>10}  {voice}")
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------


def _api_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The global options. On subcommands they default to SUPPRESS so that, given after the
    command, they override the top-level ones and, left out, leave them alone."""
    d = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
    parser.add_argument("--api-url", default=d(os.environ.get("VOICEQ_API_URL") or DEFAULT_API_URL),
                        help="voiceq API base URL (env VOICEQ_API_URL; default %s)" % DEFAULT_API_URL)
    parser.add_argument("--api-key", default=d(os.environ.get("VOICEQ_API_KEY")),
                        help="API key sent as Authorization: Bearer (env VOICEQ_API_KEY)")
    parser.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def cmd_droplets(args: argparse.Namespace) -> int:
    """`voiceq droplets --cluster NAME`: droplets.lifecycle, which talks to DigitalOcean."""
    from droplets.lifecycle import main as lifecycle_main

    return lifecycle_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voiceq", description="voiceq: voice-cloning job queue",
        epilog="exit codes: 0 ok, 1 job failed or cancelled, 2 usage or HTTP error, 3 timeout",
    )
    _api_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-test-checkpoint", help="write a random-weight Chatterbox checkpoint")
    p.add_argument("dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop-after", type=int, default=16,
                   help="speech tokens after which the random T3 starts choosing its stop token")
    p.add_argument("--max-speech-tokens", type=int, default=64,
                   help="speech-token cap the checkpoint carries")
    p.add_argument("--model", default="chatterbox",
                   choices=["chatterbox", "chatterbox-turbo", "chatterbox-multilingual"],
                   help="which member of the Chatterbox family (default: chatterbox)")
    p.add_argument("--stop-position", type=int, default=180,
                   help="Turbo only: the absolute position (prefix included) where its T3 starts to stop")
    p.set_defaults(func=cmd_make_test_checkpoint)

    p = sub.add_parser("submit", help="submit a voice sample to clone")
    _api_options(p, defaults=False)
    p.add_argument("audio", type=Path, nargs="?", help="voice sample (mp3, wav, ogg, flac, m4a, webm; 1-60 s)")
    p.add_argument("--user", required=True, help="user_id")
    p.add_argument("--name", required=True, help="voice_name")
    p.add_argument("--text", help="sample_text the cloned voice speaks")
    p.add_argument("--voice-id", help="reuse a cloned voice instead of uploading AUDIO")
    p.add_argument("--model", help="chatterbox (default), chatterbox-turbo or chatterbox-multilingual")
    p.add_argument("--language", help="ISO 639-1 language for chatterbox-multilingual (e.g. fr)")
    p.add_argument("--priority", type=int, help="-10..10, higher first")
    p.add_argument("--idempotency-key", help="retrying with the same key returns the first job")
    p.add_argument("--wait", action="store_true", help="in production, poll until the job is done")
    p.add_argument("--timeout", type=_positive, default=DEFAULT_WAIT_TIMEOUT_S,
                   help="seconds to wait for the result (default %(default)g)")
    p.add_argument("--out", type=Path, help="write the cloned sample MP3 here (implies --wait)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="show a job's status")
    _api_options(p, defaults=False)
    p.add_argument("job_id")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("wait", help="wait for a job with a progress display")
    _api_options(p, defaults=False)
    p.add_argument("job_id")
    p.add_argument("--timeout", type=_positive, default=DEFAULT_WAIT_TIMEOUT_S,
                   help="seconds before giving up (exit 3; default %(default)g)")
    p.add_argument("--stuck-after", type=_positive, default=DEFAULT_STUCK_AFTER_S,
                   help="warn when the job stays pending this long (default %(default)g)")
    p.add_argument("--out", type=Path, help="write the cloned sample MP3 here")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("stats", help="job statistics, GPU-hours and estimated cost")
    _api_options(p, defaults=False)
    p.add_argument("--user", help="one user's statistics (default: all users)")
    p.add_argument("--price-per-hour", type=float, help="GPU $/hour for the estimate (default: the server's)")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("jobs", help="list a user's jobs, newest first")
    _api_options(p, defaults=False)
    p.add_argument("--user", required=True)
    p.add_argument("--status", choices=("pending", "processing", "completed", "failed", "cancelled"))
    p.add_argument("--limit", type=int, default=20, help="at most this many (1-500, default %(default)s)")
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("droplets", add_help=False,
                       help="the cluster's GPU droplets: why, since when, cost so far (see --help)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_droplets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["droplets"]:  # its own options (droplets.lifecycle's), passed through whole
        return cmd_droplets(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
