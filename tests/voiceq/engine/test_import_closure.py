"""The engine runs on a machine that has torch and chatterbox-tts but not the server's stack:
the GPU benchmark machine carries only the engine's own wheels (benchmarks/gpu/). Importing the
engine, its session, the test checkpoints and the throughput benchmark must not need PyAV
(FFmpeg), Ray or boto3."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

PROBE = """
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"av", "ray", "boto3", "botocore", "starlette"}:
            raise ImportError(f"{name} is not on the GPU machine")
        return None
sys.meta_path.insert(0, Refuse())
sys.path[:0] = ["benchmarks", "."]
import voiceq.engine.chatterbox, voiceq.engine.family, voiceq.engine.session, voiceq.engine.checkpoint
import voiceq.watermark
import batch_throughput
print("ok")
"""


def test_the_engine_and_the_benchmark_import_without_the_server_stack() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
