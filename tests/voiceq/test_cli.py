"""The `voiceq` CLI and the seed's test script (`test_voice_cloning_queue.py`): pure parts
without a server, then both run as users run them (subprocesses) against the real app in both modes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import test_voice_cloning_queue as script
from tests.support.audio import decode_mp3, voice_file
from tests.support.server import VoiceqServer, free_port
from serve_app.responses import stats_body
from voiceq import cli
from voiceq_client import cli as light_cli  # where the commands live
from voiceq.client import JobState, Stats, VoiceqClient
from voiceq.store import JobStats

REPO = Path(__file__).resolve().parents[2]
JOB_ID = "3f2a1b4c-0000-4000-8000-000000000001"


def state(status: str, attempts: int = 1, **kw: Any) -> JobState:
    return JobState(job_id=JOB_ID, status=status, attempts=attempts, max_attempts=3, **kw)


# --- pure parts ---------------------------------------------------------------------------------


def test_exit_codes_follow_the_jobs_outcome() -> None:
    assert [cli.exit_code_for(s) for s in ("completed", "failed", "cancelled", "pending")] == [0, 1, 1, 2]
    assert (cli.EXIT_OK, cli.EXIT_JOB_FAILED, cli.EXIT_ERROR, cli.EXIT_TIMEOUT) == (0, 1, 2, 3)


def test_durations_read_naturally() -> None:
    assert [cli.format_duration(s) for s in (None, 0.0414, 5.25, 59.9, 61, 3599, 3725)] == \
        ["-", "41ms", "5.2s", "59.9s", "1m01s", "59m59s", "1h02m"]
    assert [cli.format_money(d) for d in (0.013786, 0.5, 12.345)] == ["$0.0138", "$0.5000", "$12.35"]


def test_progress_line_says_which_job_where_how_long_and_which_attempt() -> None:
    line = cli.format_progress(state("processing"), 12.34)
    assert line.split() == ["job", "3f2a1b4c", "processing", "elapsed", "12.3s", "attempt", "1/3"]
    retry = cli.format_progress(state("pending", error="storage unavailable: timed out\nretry"), 70)
    assert "elapsed 1m10s" in retry and "retrying after: storage unavailable: timed out retry" in retry
    done = cli.format_progress(state("completed", processing_time=6.5), 9)
    assert done.endswith("processing 6.5s")
    assert cli.format_progress(state("failed", attempts=3, error="RuntimeError: boom"), 1).endswith("RuntimeError: boom")


def test_seed_cost_formula_and_the_servers_summed_hours() -> None:
    # The seed: gpu_hours = total * avgProcessingTime / 3600; cost = gpu_hours * price.
    assert cli.seed_gpu_hours(10, 36.0) == pytest.approx(0.1)
    assert cli.seed_gpu_hours(3, None) == 0.0
    assert cli.cost_at(0.1, 1.77) == pytest.approx(0.177)
    stats = Stats(user_id=None, total=12, by_status={"completed": 10, "failed": 2}, avg_processing_time=36.0,
                  gpu_hours=0.1, gpu_hourly_price=1.99, estimated_cost=0.199, audio_seconds_generated=50.0)
    at_server_price = cli.cost_view(stats, None)
    assert (at_server_price.price_per_hour, at_server_price.estimated_cost) == (1.99, 0.199)
    assert at_server_price.seed_gpu_hours == pytest.approx(0.12)  # counts the failed jobs too
    h100 = cli.cost_view(stats, 3.39)
    assert h100.estimated_cost == pytest.approx(0.339) and h100.seed_estimated_cost == pytest.approx(0.4068)
    assert h100.gpu_seconds is None  # a server that does not report GPU seconds


def test_stats_count_a_batched_pass_once(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # Eight jobs that shared one 10 s engine pass: each waited 10 s, together they used 10 GPU seconds.
    by_status = {"pending": 0, "processing": 0, "completed": 8, "failed": 0, "cancelled": 0}
    stats = JobStats(total=8, by_status=by_status, avg_processing_time=10.0, total_processing_time=80.0,
                     audio_seconds_generated=16.0, total_gpu_seconds=10.0, user_id="alice")
    body = stats_body(stats, gpu_hourly_price=1.99)
    assert body["gpuSeconds"] == 10.0 and body["gpuHours"] == pytest.approx(10 / 3600)
    assert body["avgProcessingTime"] == 10.0  # what each user waited stays the wall time
    assert body["estimatedCost"] == pytest.approx(10 / 3600 * 1.99, abs=1e-6)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    monkeypatch.setattr(light_cli, "VoiceqClient", lambda url, api_key=None: VoiceqClient(url, transport=transport))

    assert cli.main(["stats", "--user", "alice"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "GPU time                     10.0s  (each job's share of its engine pass)" in lines
    assert "GPU-hours                    0.0028" in lines
    assert f"estimated cost               {cli.format_money(body['estimatedCost'])}  at $1.99/h" in lines
    # The seed's formula still counts the pass eight times, for comparison.
    assert any(line.startswith("seed estimate                0.0222 GPU-h") for line in lines)

    assert cli.main(["--json", "stats", "--user", "alice", "--price-per-hour", "3.39"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["gpuSeconds"] == 10.0 and numbers["pricePerHour"] == 3.39
    assert numbers["estimatedCostAtPrice"] == pytest.approx(10 / 3600 * 3.39)
    assert numbers["seedEstimatedCost"] == pytest.approx(80 / 3600 * 3.39)


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    out = io.StringIO()
    t = [0.0]
    progress = cli.Progress(out, tty=True, clock=lambda: t[0])
    progress.update(state("pending", attempts=0))
    t[0] = 3.0
    progress.update(state("processing"))
    progress.finish()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.count("\n") == 1 and text.endswith("\n")
    last = text.rsplit("\r", 1)[1]
    assert "processing" in last and "elapsed 3.0s" in last


def test_progress_prints_plain_lines_on_change_and_a_heartbeat_elsewhere() -> None:
    out = io.StringIO()
    t = [0.0]
    progress = cli.Progress(out, tty=False, clock=lambda: t[0], heartbeat_s=30)
    for now, status in ((0, "pending"), (1, "pending"), (2, "processing"), (10, "processing"), (40, "processing"),
                        (41, "completed")):
        t[0] = now
        progress.update(state(status))
    progress.finish()
    lines = out.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["pending", "processing", "processing", "completed"]
    assert "\r" not in out.getvalue() and "elapsed 40.0s" in lines[2]


def test_stuck_pending_is_reported_once() -> None:
    t = [0.0]
    watch = cli.StuckWatch(60, clock=lambda: t[0])
    seen = []
    for now, status in ((0, "pending"), (30, "pending"), (61, "pending"), (90, "pending"), (100, "processing")):
        t[0] = now
        seen.append(watch.check(state(status, attempts=0)))
    assert seen == [False, False, True, False, False]


def test_troubleshooting_gives_the_seeds_headline_and_what_to_do() -> None:
    lines = cli.troubleshooting("Convex not reachable: check CONVEX_URL")
    assert lines[0] == '"Convex not reachable"' and any("CONVEX_URL" in line for line in lines[1:])
    assert cli.troubleshooting("voiceq API not reachable at http://x: connection refused")[0] == \
        '"voiceq API not reachable"'
    assert cli.troubleshooting("Processing timeout: job x did not finish")[0] == '"Processing timeout"'
    assert cli.troubleshooting("something else entirely") == []


def test_global_options_go_before_or_after_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEQ_API_URL", "http://env:1")
    monkeypatch.setenv("VOICEQ_API_KEY", "from-env")
    args = cli.build_parser().parse_args(["status", JOB_ID])
    assert (args.api_url, args.api_key, args.json) == ("http://env:1", "from-env", False)
    args = cli.build_parser().parse_args(["--api-url", "http://a:1", "status", JOB_ID, "--json", "--api-key", "k"])
    assert (args.api_url, args.api_key, args.json) == ("http://a:1", "k", True)


def test_cli_reports_an_unreachable_api_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["--api-url", url, "stats"]) == 2
    err = capsys.readouterr().err
    assert f"voiceq API not reachable at {url}" in err and "serve run serve_app:app" in err


def test_cli_exit_codes_for_failed_and_cancelled_jobs(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bodies = {"failed": {"jobId": JOB_ID, "status": "failed", "attempts": 3, "maxAttempts": 3,
                         "error": "RuntimeError: CUDA out of memory"},
              "cancelled": {"jobId": JOB_ID, "status": "cancelled", "attempts": 0, "error": "cancelled by user"}}
    current = {"body": bodies["failed"]}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=current["body"]))
    monkeypatch.setattr(light_cli, "VoiceqClient", lambda url, api_key=None: VoiceqClient(url, transport=transport))
    assert cli.main(["status", JOB_ID]) == 1
    assert cli.main(["wait", JOB_ID, "--timeout", "5"]) == 1
    captured = capsys.readouterr()
    assert "CUDA out of memory" in captured.out and f"job {JOB_ID} failed" in captured.err
    current["body"] = bodies["cancelled"]
    assert cli.main(["--json", "wait", JOB_ID]) == 1
    assert json.loads(capsys.readouterr().out)["job"]["status"] == "cancelled"


def test_script_reads_both_shapes_of_readiness_checks() -> None:
    ok, lines = script.describe_check("engine", {"status": "ok", "replicas": 1})
    assert ok and lines == ["  [ok]   Chatterbox (inference deployment) (replicas 1)"]
    ok, lines = script.describe_check("job_store", {"status": "error", "message": "Convex not reachable",
                                                    "action": "check CONVEX_URL", "detail": "timed out"})
    assert not ok and lines[0].endswith('"Convex not reachable"') and "what to do: check CONVEX_URL" in lines[2]
    ok, lines = script.describe_check("engine", "RayActorError: dead")  # older servers: plain text
    assert not ok and '"Chatterbox not running"' in lines[0] and "RayActorError: dead" in lines[1]
    assert any("serve status" in line for line in lines)
    ok, lines = script.describe_check("queue", {"status": "error", "message": "Job stuck in pending",
                                                "detail": "oldest pending job has waited 900 s", "pending": 3})
    assert not ok and lines[0] == '  [warn] queue: "Job stuck in pending"'
    assert "what to do" not in "".join(lines) and any("GPU droplet takes minutes" in line for line in lines)


def test_script_output_path_and_mp3_sniffing(tmp_path: Path) -> None:
    assert script.default_output(tmp_path / "audio.mp3") == tmp_path / "audio.cloned.mp3"
    assert script.looks_like_mp3(b"ID3\x04rest") and script.looks_like_mp3(b"\xff\xfb\x90\x00")
    assert not script.looks_like_mp3(b"RIFF....WAVE") and not script.looks_like_mp3(b"")


def test_script_fails_clearly_when_the_api_is_down(tmp_path: Path) -> None:
    audio = tmp_path / "audio.wav"
    audio.write_bytes(b"RIFF")
    url = f"http://127.0.0.1:{free_port()}"
    result = run_script(audio, "--api-url", url)
    assert result.returncode == 2
    assert f"voiceq API not reachable at {url}" in result.stdout and "serve run serve_app:app" in result.stdout


# --- against the real app -------------------------------------------------------------------


def voiceq_cmd() -> list[str]:
    console = Path(sys.executable).parent / "voiceq"  # the installed entry point
    return [str(console)] if console.exists() else [sys.executable, "-m", "voiceq_cli"]


def run_cli(server: VoiceqServer, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VOICEQ_API_KEY",)}
    return subprocess.run([*voiceq_cmd(), "--api-url", server.url, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def run_script(audio: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "test_voice_cloning_queue.py"), str(audio), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def unique_user() -> str:
    return "cli-" + uuid.uuid4().hex[:10]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "audio.mp3"
    path.write_bytes(voice_file("mp3", seconds=3.0, seed=11))
    return path


def assert_mp3(path: Path) -> None:
    samples, rate = decode_mp3(path.read_bytes())
    assert rate == 24_000 and len(samples) > 0


@pytest.mark.slow
def test_production_cli_submit_then_wait_status_jobs_stats(voiceq_server: VoiceqServer, sample: Path,
                                                           tmp_path: Path) -> None:
    voiceq_server.deploy(voiceq_server.settings_for(environment="production"))
    user = unique_user()
    submitted = run_cli(voiceq_server, "--json", "submit", str(sample), "--user", user, "--name", "CLI Voice",
                        "--text", "Testing the queue.")
    assert submitted.returncode == 0, submitted.stderr
    body = json.loads(submitted.stdout)
    job_id = body["submit"]["jobId"]
    assert body["submit"]["httpStatus"] == 202 and body["job"] is None

    too_soon = run_cli(voiceq_server, "wait", job_id, "--timeout", "0.2")
    assert too_soon.returncode == 3, too_soon.stderr
    assert "Processing timeout" in too_soon.stderr

    out = tmp_path / "result.mp3"
    waited = run_cli(voiceq_server, "wait", job_id, "--out", str(out))
    assert waited.returncode == 0, waited.stderr
    progress = waited.stderr.splitlines()  # not a terminal: plain lines, the last one final
    assert progress and all(line.startswith(f"job {job_id[:8]}") for line in progress)
    assert "completed" in progress[-1]
    assert "status      completed" in waited.stdout and f"saved       {out}" in waited.stdout
    assert_mp3(out)

    status = run_cli(voiceq_server, "status", job_id)
    assert status.returncode == 0 and "CLI Voice (voice_" in status.stdout
    assert "environment=production" in status.stdout

    jobs = run_cli(voiceq_server, "jobs", "--user", user)
    assert jobs.returncode == 0 and job_id in jobs.stdout and "completed" in jobs.stdout
    none = run_cli(voiceq_server, "jobs", "--user", user, "--status", "failed")
    assert none.returncode == 0 and f"no jobs for user {user} with status failed" in none.stdout

    stats = run_cli(voiceq_server, "stats", "--user", user, "--price-per-hour", "3.39", "--json")
    assert stats.returncode == 0, stats.stderr
    numbers = json.loads(stats.stdout)
    assert numbers["total"] == 1 and {k: v for k, v in numbers["byStatus"].items() if v} == {"completed": 1}
    assert numbers["gpuHours"] > 0 and numbers["pricePerHour"] == 3.39
    assert numbers["estimatedCostAtPrice"] == pytest.approx(numbers["gpuHours"] * 3.39)
    assert numbers["estimatedCost"] == pytest.approx(numbers["gpuHours"] * numbers["gpuHourlyPrice"], abs=1e-6)

    missing = run_cli(voiceq_server, "status", str(uuid.uuid4()))
    assert missing.returncode == 2 and "error: HTTP 404" in missing.stderr


@pytest.mark.slow
def test_production_test_script_polls_with_progress(voiceq_server: VoiceqServer, sample: Path) -> None:
    voiceq_server.deploy(voiceq_server.settings_for(environment="production"))
    result = run_script(sample, "--api-url", voiceq_server.url, "--user-id", unique_user())
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for expected in ("[ok]   API reachable", "[ok]   job store", "[ok]   audio storage",
                     "Chatterbox (inference deployment)", "mode:  production", "202 in", "== Waiting",
                     "completed", "queue wait", "submit latency", "PASS"):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    job_line = next(line for line in out.splitlines() if line.strip().startswith("job id"))
    assert len(job_line.split()[-1]) == 36
    assert_mp3(sample.with_name("audio.cloned.mp3"))


@pytest.mark.slow
def test_development_test_script_gets_the_result_at_once(voiceq_server: VoiceqServer, sample: Path,
                                                         tmp_path: Path) -> None:
    voiceq_server.deploy(voiceq_server.settings_for(environment="development"))
    out = tmp_path / "nested" / "clone.mp3"
    result = run_script(sample, "--api-url", voiceq_server.url, "--out", str(out), "--voice-name", "Script Voice",
                        "--user-id", unique_user())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mode:  development" in result.stdout and "completed at once (development mode)" in result.stdout
    assert "== Waiting" not in result.stdout
    assert "voice name       Script Voice" in result.stdout and "PASS" in result.stdout
    assert_mp3(out)

    skipped = run_script(tmp_path / "missing.mp3", "--api-url", voiceq_server.url, "--skip-checks")
    assert skipped.returncode == 2 and "no such audio file" in skipped.stdout


@pytest.mark.slow
def test_development_cli_submit_waits_and_saves(voiceq_server: VoiceqServer, sample: Path, tmp_path: Path) -> None:
    voiceq_server.deploy(voiceq_server.settings_for(environment="development"))
    user = unique_user()
    out = tmp_path / "dev.mp3"
    submitted = run_cli(voiceq_server, "submit", str(sample), "--user", user, "--name", "Dev CLI", "--out", str(out))
    assert submitted.returncode == 0, submitted.stderr
    assert "status      completed" in submitted.stdout and "environment=development" in submitted.stdout
    assert_mp3(out)

    stats = run_cli(voiceq_server, "stats", "--user", user)
    assert stats.returncode == 0, stats.stderr
    lines = stats.stdout.splitlines()
    assert lines[0].split() == ["jobs", "(user", f"{user})", "1"]
    assert "  completed                  1" in lines
    assert any(line.startswith("estimated cost  ") and line.endswith("at $1.99/h") for line in lines)
    assert any(line.startswith("seed estimate") for line in lines)

    bad = run_cli(voiceq_server, "submit", str(tmp_path / "nope.mp3"), "--user", user, "--name", "x")
    assert bad.returncode == 2 and "no such audio file" in bad.stderr
    refused = run_cli(voiceq_server, "jobs", "--user", "bad user id with spaces!")
    assert refused.returncode == 2 and "error: HTTP 400" in refused.stderr


def test_voiceq_droplets_lists_the_clusters_droplets(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from droplets.tags import cluster_tag
    from tests.fakes.digitalocean import FakeDigitalOcean
    from voiceq_cli import main

    with FakeDigitalOcean() as fake:
        fake.add_droplet("voiceq-gpu", size="gpu-mi300x1-192gb", tags=(cluster_tag("voiceq"),))
        fake.add_foreign_droplet("not-ours", size="gpu-h100x1-80gb")
        monkeypatch.setenv("DO_API_TOKEN", fake.token)
        assert main(["droplets", "--cluster", "voiceq", "--endpoint", fake.endpoint]) == 0
    out = capsys.readouterr().out
    assert "voiceq-gpu" in out and "not-ours" not in out and "$1.99" in out
