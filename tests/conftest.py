"""Session-wide fixtures: the random-weight checkpoint and one Ray cluster with Serve on it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.server import VoiceqServer, free_port

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT_VERSION = "v1"


def cache_dir() -> Path:
    return Path(os.environ.get("VOICEQ_TEST_CACHE", REPO / ".cache"))


@pytest.fixture(scope="session")
def checkpoint_dir() -> Path:
    """The random-weight test checkpoint, made once and kept in the cache between runs
    (it takes ~20 s and 1 GB to write)."""
    from voiceq.engine.checkpoint import make_test_checkpoint

    path = cache_dir() / f"test-checkpoint-{CHECKPOINT_VERSION}"
    done = path / ".complete"
    if not done.exists():
        if path.exists():
            shutil.rmtree(path)
        make_test_checkpoint(path)
        done.write_text("ok\n")
    return path


@pytest.fixture(scope="session")
def turbo_checkpoint_dir() -> Path:
    """A random-weight Chatterbox Turbo checkpoint (its own S3Gen: the meanflow one)."""
    from voiceq.engine.checkpoint import make_test_checkpoint

    path = cache_dir() / f"test-checkpoint-turbo-{CHECKPOINT_VERSION}"
    done = path / ".complete"
    if not done.exists():
        if path.exists():
            shutil.rmtree(path)
        make_test_checkpoint(path, model="chatterbox-turbo")
        done.write_text("ok\n")
    return path


@pytest.fixture(scope="session")
def multilingual_checkpoint_dir(checkpoint_dir: Path) -> Path:
    """A random-weight multilingual checkpoint; as on the hub, it shares the English
    checkpoint's VE and S3Gen files (hard links: nothing written twice)."""
    from voiceq.engine.checkpoint import make_test_checkpoint

    path = cache_dir() / f"test-checkpoint-multilingual-{CHECKPOINT_VERSION}"
    done = path / ".complete"
    if not done.exists():
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        for name in ("ve.safetensors", "s3gen.safetensors"):
            os.link(checkpoint_dir / name, path / name)
        make_test_checkpoint(path, model="chatterbox-multilingual")
        done.write_text("ok\n")
    return path


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """Where the test cluster's node exports Prometheus metrics (`/metrics`)."""
    return free_port()


@pytest.fixture(scope="session")
def ray_cluster(metrics_port: int) -> Iterator[int]:
    """A local Ray cluster with Serve's HTTP proxy on a free port; yields that port."""
    import ray
    from ray import serve

    # Workers import test code (stand-in engines) by module path, like the driver does.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _metrics_export_port=metrics_port,
             runtime_env={"env_vars": {"TQDM_DISABLE": "1"}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def voiceq_server(ray_cluster: int, checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> VoiceqServer:
    return VoiceqServer(port=ray_cluster, checkpoint_dir=checkpoint_dir, base_dir=tmp_path_factory.mktemp("voiceq"))
