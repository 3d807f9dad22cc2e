"""The `voiceq` command line: its commands and parser (what it shows is in present.py).

    voiceq submit AUDIO --user U --name N [--text T] [--voice-id V] [--format F] [--wait] [--out FILE]
    voiceq status JOB_ID
    voiceq wait JOB_ID [--timeout S] [--out FILE]
    voiceq cancel JOB_ID
    voiceq retry JOB_ID                  (admin keys) a failed job back in the queue
    voiceq download JOB_ID --out FILE
    voiceq voices --user U [--limit N]
    voiceq stats [--user U] [--price-per-hour P]
    voiceq jobs --user U [--status S] [--limit N]

The full `voiceq` (installed with the server) adds make-test-checkpoint and droplets.

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
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from .client import DEFAULT_API_URL, ApiError, ClientError, JobState, Submitted, VoiceqClient, WaitTimeout
from .present import (
    DEFAULT_STUCK_AFTER_S,
    DEFAULT_WAIT_TIMEOUT_S,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
    Progress,
    StuckWatch,
    cost_view,
    describe_job,
    exit_code_for,
    format_duration,
    format_money,
    format_timestamp,
    troubleshooting,
)

Command = Callable[[argparse.Namespace], int]
# Commands the full `voiceq` adds to the parser: (subparsers) -> None.
Extension = Callable[[Any], None]

# --- shared command plumbing -------------------------------------------------------------------


def _client(args: argparse.Namespace) -> VoiceqClient:
    return VoiceqClient(args.api_url, api_key=args.api_key or None)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _fail(message: str, code: int = EXIT_ERROR, *, advice: ClientError | str | None = None) -> int:
    print(f"error: {message}", file=sys.stderr)
    for line in troubleshooting(advice) if advice is not None else []:
        print(line, file=sys.stderr)
    return code


def _show_job(args: argparse.Namespace, state: JobState) -> None:
    if args.json:
        _print_json(state.body)
    else:
        for line in describe_job(state):
            print(line)


def _error_exit(err: ClientError) -> int:
    """Report a failed call; the advice follows the error's stable code, not its wording."""
    if isinstance(err, ApiError) and err.code == "unauthorized":
        return _fail(f"API key required: {err.message}", advice=err)
    if isinstance(err, WaitTimeout):
        return _fail(err.message, EXIT_TIMEOUT, advice=err)
    return _fail(str(err) if isinstance(err, ApiError) else err.message, advice=err)


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
            for line in troubleshooting("stuck_pending")[1:]:
                progress.note(line)

    try:
        return client.wait(job_id, timeout_s=timeout_s, on_progress=show)
    finally:
        progress.finish()


def _save(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- commands ----------------------------------------------------------------------------------


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
                response_format=args.response_format,
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
        state = client.status(args.job_id)
    _show_job(args, state)
    return exit_code_for(state.status) if state.terminal else EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    with _client(args) as client:
        state = wait_for(client, args.job_id, timeout_s=args.timeout, stream=sys.stderr,
                         stuck_after_s=args.stuck_after)
        return _finish_job(client, args, state)


def cmd_stats(args: argparse.Namespace) -> int:
    if args.price_per_hour is not None and args.price_per_hour < 0:
        return _fail("--price-per-hour must not be negative")
    with _client(args) as client:
        stats = client.stats(args.user)
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
        jobs = client.jobs(args.user, status=args.status, limit=args.limit)
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


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        state = client.cancel(args.job_id)
    _show_job(args, state)
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    with _client(args) as client:
        state = client.retry(args.job_id)
    if args.json:
        _print_json(state.body)
    else:
        print(f"job {state.job_id} is {state.status} again (attempt {state.attempts} so far)")
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    with _client(args) as client:
        data = client.result_audio(args.job_id)
    saved = _save(args.out, data)
    if args.json:
        _print_json({"jobId": args.job_id, "savedTo": str(saved), "bytes": len(data)})
    else:
        print(f"saved {len(data)} bytes to {saved}")
    return EXIT_OK


def cmd_voices(args: argparse.Namespace) -> int:
    with _client(args) as client:
        voices = client.voices(args.user, limit=args.limit)
    if args.json:
        _print_json({"userId": args.user, "voices": [v.body for v in voices]})
        return EXIT_OK
    if not voices:
        print(f"no voices for user {args.user}")
        return EXIT_OK
    print(f"{'VOICE ID':<22}  {'CREATED':<19}  {'MODELS':<24}  NAME")
    for voice in voices:
        print(f"{voice.voice_id:<22}  {format_timestamp(voice.created_at):<19}  "
              f"{','.join(voice.models) or '-':<24}  {voice.name or '-'}")
    return EXIT_OK


def build_parser(extend: Extension | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voiceq", description="voiceq: voice-cloning job queue",
        epilog="exit codes: 0 ok, 1 job failed or cancelled, 2 usage or HTTP error, 3 timeout",
    )
    _api_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True)

    if extend is not None:
        extend(sub)

    p = sub.add_parser("submit", help="submit a voice sample to clone")
    _api_options(p, defaults=False)
    p.add_argument("audio", type=Path, nargs="?", help="voice sample (mp3, wav, ogg, flac, m4a, webm; 1-60 s)")
    p.add_argument("--user", required=True, help="user_id")
    p.add_argument("--name", required=True, help="voice_name")
    p.add_argument("--text", help="sample_text the cloned voice speaks")
    p.add_argument("--voice-id", help="reuse a cloned voice instead of uploading AUDIO")
    p.add_argument("--model", help="chatterbox (default), chatterbox-turbo or chatterbox-multilingual")
    p.add_argument("--language", help="ISO 639-1 language for chatterbox-multilingual (e.g. fr)")
    p.add_argument("--format", dest="response_format", choices=("mp3", "opus", "aac", "flac", "wav", "pcm"),
                   help="the result's audio format (default mp3)")
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

    p = sub.add_parser("cancel", help="cancel a pending or running job")
    _api_options(p, defaults=False)
    p.add_argument("job_id")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("retry", help="put a failed job back in the queue (admin keys)")
    _api_options(p, defaults=False)
    p.add_argument("job_id")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("download", help="save a finished job's audio")
    _api_options(p, defaults=False)
    p.add_argument("job_id")
    p.add_argument("--out", type=Path, required=True, help="where to write it")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("voices", help="list a user's voices, newest first")
    _api_options(p, defaults=False)
    p.add_argument("--user", required=True)
    p.add_argument("--limit", type=int, help="at most this many (1-1000)")
    p.set_defaults(func=cmd_voices)
    return parser


def main(argv: Sequence[str] | None = None, *, extend: Extension | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(extend).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ClientError as err:  # every command reports a failed call the same way
        return _error_exit(err)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
