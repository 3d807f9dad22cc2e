#!/usr/bin/env python3
"""The seed's test script: check the services, clone a voice, poll, print the result and timings.

    python test_voice_cloning_queue.py path/to/audio.mp3
    python test_voice_cloning_queue.py audio.mp3 --api-url http://localhost:8000
    python test_voice_cloning_queue.py audio.mp3 --skip-checks

Works against both modes: development answers 200 with the cloned sample at once; production
answers 202 and the script polls the status URL with a progress display. The sample is saved
next to the input as `<audio>.cloned.mp3` (or `--out`). Exit status: 0 when the clone
completed, 1 when the job failed or was cancelled, 2 when a service check or request failed,
3 on a timeout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from voiceq.cli import (
    DEFAULT_STUCK_AFTER_S,
    EXIT_ERROR,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    format_duration,
    troubleshooting,
    wait_for,
)
from voiceq.client import (
    API_PREFIX,
    DEFAULT_API_URL,
    ApiError,
    ApiUnreachable,
    ClientError,
    JobState,
    Submitted,
    VoiceqClient,
    WaitTimeout,
)

# What a failing check means when the server names no message of its own.
_CHECK_HEADLINES = {
    "job_store": "Job store not reachable",
    "storage": "Audio storage not reachable",
    "engine": "Chatterbox not running",
    "queue": "Job stuck in pending",
    "processing": "Processing timeout",
}
_CHECK_LABELS = {
    "job_store": "job store",
    "storage": "audio storage",
    "engine": "Chatterbox (inference deployment)",
    "queue": "queue",
    "processing": "jobs in progress",
}
CRITICAL_CHECKS = ("job_store", "storage", "engine")


def say(text: str = "") -> None:
    print(text, flush=True)


def default_output(audio: Path) -> Path:
    return audio.with_name(audio.stem + ".cloned.mp3")


def looks_like_mp3(data: bytes) -> bool:
    """An ID3 tag or an MPEG audio frame sync at the start."""
    return data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


def describe_check(name: str, value: Any) -> tuple[bool, list[str]]:
    """(ok, printable lines) for one entry of /ready's checks: either "ok" / an error text, or
    {"status": "ok"|"error", "message", "action", "detail", ...}. A failing check that does
    not stop a clone (a slow queue) is a warning."""
    label = _CHECK_LABELS.get(name, name)
    bad = "[FAIL]" if name in CRITICAL_CHECKS or name not in _CHECK_LABELS else "[warn]"
    if isinstance(value, Mapping):
        ok = value.get("status") == "ok"
        extras = {k: v for k, v in value.items() if k not in ("status", "message", "action", "detail")}
        info = ", ".join(f"{k} {v}" for k, v in extras.items())
        if ok:
            return True, [f"  [ok]   {label}" + (f" ({info})" if info else "")]
        message = str(value.get("message") or _CHECK_HEADLINES.get(name, f"{name} failing"))
        lines = [f'  {bad} {label}: "{message}"']
        if value.get("detail"):
            lines.append(f"         {value['detail']}")
        if value.get("action"):
            lines.append(f"         what to do: {value['action']}")
        else:
            lines += ["       " + line for line in troubleshooting(message)[1:]]
        return False, lines
    ok = value == "ok"
    if ok:
        return True, [f"  [ok]   {label}"]
    message = _CHECK_HEADLINES.get(name, f"{name} failing")
    lines = [f'  {bad} {label}: "{message}"', f"         {value}"]
    lines += ["       " + line for line in troubleshooting(message)[1:]]
    return False, lines


def service_checks(client: VoiceqClient) -> tuple[bool, str | None]:
    """Print each check; (all critical checks passed, the server's environment)."""
    say("== Service checks")
    try:
        client.health()
        say(f"  [ok]   API reachable ({client.base_url}/health)")
    except ClientError as err:
        say(f"  [FAIL] {err.message if isinstance(err, ApiUnreachable) else f'/health answered {err}'}")
        for line in troubleshooting("voiceq API not reachable"):
            say("       " + line)
        return False, None
    try:
        ready = client.ready()
    except ClientError as err:
        say(f"  [FAIL] /ready: {err}")
        return False, None
    environment = ready.body.get("environment")
    critical_ok = True
    for name, value in ready.checks.items():
        ok, lines = describe_check(name, value)
        for line in lines:
            say(line)
        if not ok and name in CRITICAL_CHECKS:
            critical_ok = False
    if "engine" not in ready.checks:
        say("  [skip] Chatterbox (inference deployment): not reported by this server")
    if environment:
        mode = "answers 202 and queues" if environment == "production" else "answers 200 when done"
        say(f"  mode:  {environment} ({mode})")
    return critical_ok, environment if isinstance(environment, str) else None


def print_result(state: JobState, *, submit_latency_s: float, total_s: float, saved: Path | None,
                 size: int | None) -> None:
    say("== Result")
    rows = [
        ("job id", state.job_id),
        ("voice id", state.voice_id or "-"),
        ("voice name", state.voice_name or "-"),
        ("status", state.status),
        ("attempts", str(state.attempts)),
        ("processing time", format_duration(state.processing_time)),
        ("submit latency", format_duration(submit_latency_s)),
        ("queue wait", format_duration(state.queue_wait_s)),
        ("total", format_duration(total_s)),
    ]
    if state.worker_info:
        rows.append(("worker", ", ".join(f"{k}={v}" for k, v in state.worker_info.items())))
    if state.error:
        rows.append(("error", state.error))
    if saved is not None:
        rows.append(("sample saved", f"{saved} ({size or 0} bytes)"))
    for name, value in rows:
        say(f"  {name:<16} {value}")


def run(args: argparse.Namespace) -> int:
    audio: Path = args.audio
    if not audio.is_file():
        say(f"error: no such audio file: {audio}")
        return EXIT_ERROR
    out: Path = args.out or default_output(audio)
    say(f"voiceq test against {args.api_url}")
    with VoiceqClient(args.api_url, api_key=args.api_key or None) as client:
        if not args.skip_checks:
            ok, _ = service_checks(client)
            if not ok:
                say("FAIL: service checks failed (use --skip-checks to submit anyway)")
                return EXIT_ERROR

        say("== Submit")
        say(f"  POST {API_PREFIX}/clone  {audio.name} ({audio.stat().st_size} bytes)  "
            f"user {args.user_id}  voice {args.voice_name!r}")
        started = time.monotonic()
        try:
            submitted = client.submit(audio, user_id=args.user_id, voice_name=args.voice_name,
                                      sample_text=args.sample_text, timeout_s=args.timeout)
        except ApiError as err:
            say(f"  HTTP {err.status_code}: {err.message}")
            for line in troubleshooting(err):
                say("  " + line)
            if err.job_id is None:
                say("FAIL: the submission was refused")
                return EXIT_ERROR
            # Development mode gave up waiting (504) or hit a retryable failure (503): the job
            # exists and its status URL will show the outcome.
            submitted = Submitted(job_id=err.job_id, http_status=err.status_code, status="queued",
                                  status_url=err.body.get("statusUrl"), body=err.body,
                                  latency_s=time.monotonic() - started)
        except ClientError as err:
            say(f"  {err.message}")
            for line in troubleshooting(err):
                say("  " + line)
            say("FAIL: could not submit")
            return EXIT_ERROR

        if submitted.completed:
            say(f"  200 in {format_duration(submitted.latency_s)}: job {submitted.job_id} completed at once "
                "(development mode)")
        else:
            say(f"  {submitted.http_status} in {format_duration(submitted.latency_s)}: job {submitted.job_id} "
                f"{submitted.status}; polling {submitted.status_url}")

        try:
            if submitted.completed:
                state = client.status(submitted.job_id)
            else:
                say("== Waiting")
                remaining = max(1.0, args.timeout - (time.monotonic() - started))
                state = wait_for(client, submitted.job_id, timeout_s=remaining, stream=sys.stdout,
                                 stuck_after_s=args.stuck_after, started_at=started, indent="  ")
            total_s = time.monotonic() - started
            saved, size = None, None
            if state.status == "completed":
                data = submitted.sample_audio if submitted.sample_audio is not None \
                    else client.result_audio(state.job_id)
                if not looks_like_mp3(data):
                    say(f"FAIL: the result of job {state.job_id} is not an MP3 ({len(data)} bytes)")
                    return EXIT_ERROR
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
                saved, size = out, len(data)
        except WaitTimeout as err:
            say(f"FAIL: {err.message}")
            for line in troubleshooting("Processing timeout"):
                say("  " + line)
            return EXIT_TIMEOUT
        except ClientError as err:
            say(f"FAIL: {err}")
            for line in troubleshooting(err):
                say("  " + line)
            return EXIT_ERROR

        print_result(state, submit_latency_s=submitted.latency_s, total_s=total_s, saved=saved, size=size)
        if state.status != "completed":
            say(f"FAIL: job {state.status}")
            return EXIT_JOB_FAILED
        say("PASS")
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Test the voice-cloning job queue end to end.")
    parser.add_argument("audio", type=Path, help="voice sample to clone (mp3, wav, ogg, flac, m4a, webm; 1-60 s)")
    parser.add_argument("--api-url", default=os.environ.get("VOICEQ_API_URL") or DEFAULT_API_URL,
                        help="API base URL (env VOICEQ_API_URL; default %s)" % DEFAULT_API_URL)
    parser.add_argument("--skip-checks", action="store_true", help="skip the service checks")
    parser.add_argument("--user-id", default="test123")
    parser.add_argument("--voice-name", default="Test Voice")
    parser.add_argument("--sample-text", default="Hello, this is my cloned voice")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the result")
    parser.add_argument("--stuck-after", type=float, default=DEFAULT_STUCK_AFTER_S,
                        help='warn "Job stuck in pending" after this many seconds pending')
    parser.add_argument("--api-key", default=os.environ.get("VOICEQ_API_KEY"),
                        help="API key (env VOICEQ_API_KEY); production requires one")
    parser.add_argument("--out", type=Path, help="where to save the cloned sample (default <audio>.cloned.mp3)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
