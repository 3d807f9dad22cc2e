"""Streaming speech: time to first audio (TTFA) and total time for texts of 1, 5 and 20 sentences.

    python benchmarks/streaming.py --start-app                 # own app, paced stand-in engine
    python benchmarks/streaming.py --start-app --chatterbox    # own app, the model from CHATTERBOX_CKPT_DIR
    python benchmarks/streaming.py --api-url URL --api-key K --voice-id V

POSTs `/v1/audio/speech` and reads the response as it streams: TTFA is the time to the first
audio bytes, total the time to the last. The first chunk of a text (its first sentence) is a
job of its own and the rest is submitted only once it is made, so TTFA should not grow with the
text: the last line, `ttfa_20_vs_1=<ratio>`, is close to 1 when it does not.

`--start-app` runs the real Serve app (ingress, bookkeeping on a SQLite file, inference) in
production mode on a local Ray cluster. Its default engine is a stand-in whose passes cost
0.3 s plus 4 ms per character of text in the pass, so a pass holding a whole long text would
cost far more than one holding a sentence (a random-weight model on a CPU costs about the same
per pass whatever the text, which would hide the effect).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

API = "/api/public/voice/onboarding"
SENTENCE = "This sentence is one of several in a longer text, read aloud at a steady pace."


def text_of(n: int) -> str:
    return " ".join(f"Sentence {i + 1}. {SENTENCE}" if i else f"{SENTENCE}" for i in range(n))


def measure(http: httpx.Client, voice_id: str, n: int) -> tuple[float, float, int]:
    """(TTFA s, total s, bytes) of one streamed speech request."""
    started = time.perf_counter()
    first = None
    size = 0
    with http.stream("POST", "/v1/audio/speech", json={"model": "tts-1", "input": text_of(n), "voice": voice_id,
                                                        "response_format": "pcm"}) as r:
        if r.status_code != 200:
            r.read()
            raise SystemExit(f"speech failed: HTTP {r.status_code} {r.text}")
        for piece in r.iter_bytes():
            if piece and first is None:
                first = time.perf_counter() - started
            size += len(piece)
    return first or 0.0, time.perf_counter() - started, size


def clone_voice(http: httpx.Client) -> str:
    from tests.support.audio import voice_file

    made = http.post(f"{API}/clone", data={"user_id": "bench", "voice_name": "Bench"},
                     files={"audio_file": ("v.wav", voice_file("wav", seconds=3.0), "audio/wav")})
    made.raise_for_status()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        body = http.get(f"{API}/jobs/{made.json()['jobId']}/status").json()
        if body["status"] == "completed":
            return body["voiceId"]
        if body["status"] in ("failed", "cancelled"):
            raise SystemExit(f"cloning the benchmark voice failed: {body}")
        time.sleep(0.3)
    raise SystemExit("cloning the benchmark voice timed out")


def start_app(args: argparse.Namespace) -> str:
    import ray
    from ray import serve

    from serve_app.builder import compose
    from tests.support.server import free_port, wait_until
    from voiceq.settings import Settings

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    overrides: dict[str, Any] = {}
    factory = None
    if args.chatterbox:
        overrides = {"chatterbox_ckpt_dir": os.environ.get("CHATTERBOX_CKPT_DIR"), "chatterbox_device": "cpu",
                     "max_speech_tokens": args.max_tokens}
    else:
        from tests.support.speech_engines import paced_tone_engine_factory

        factory = paced_tone_engine_factory
    settings = Settings(environment="production", data_dir=Path(tempfile.mkdtemp(prefix="voiceq-stream-")),
                        auth="off", poll_interval_s=0.05, batch_wait_s=0.05, max_batch_size=8, **overrides)
    serve.run(compose(settings, engine_factory=factory), name="voiceq", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/ready").status_code == 200, timeout_s=300, what="the app")
    print(f"started the app at {url} ({'chatterbox' if args.chatterbox else 'paced stand-in engine'})", flush=True)
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api-url", default="http://localhost:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--voice-id", default=None, help="a voice of the key's library (default: clone one)")
    parser.add_argument("--start-app", action="store_true")
    parser.add_argument("--chatterbox", action="store_true", help="with --start-app: the real model")
    parser.add_argument("--max-tokens", type=int, default=25, help="with --chatterbox: speech tokens per chunk")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    url = start_app(args) if args.start_app else args.api_url
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    with httpx.Client(base_url=url, headers=headers, timeout=900) as http:
        voice_id = args.voice_id or clone_voice(http)
        measure(http, voice_id, 1)  # warm up: the voice in the replica's cache
        ttfa: dict[int, float] = {}
        for n in (1, 5, 20):
            runs = [measure(http, voice_id, n) for _ in range(args.repeats)]
            ttfa[n] = statistics.median(r[0] for r in runs)
            total = statistics.median(r[1] for r in runs)
            audio_s = statistics.median(r[2] for r in runs) / 2 / 24_000
            print(f"sentences={n} ttfa_s={ttfa[n]:.3f} total_s={total:.3f} audio_s={audio_s:.2f}", flush=True)
    print(f"ttfa_20_vs_1={ttfa[20] / ttfa[1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
