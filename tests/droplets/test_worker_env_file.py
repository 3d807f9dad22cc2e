"""The worker's environment file, as the generated cloud-init script writes it, is private.

The file carries whatever `node_config.environment` passes to the Ray worker (store URLs,
keys). The part of the user data that creates it runs here under a scratch root, with the
metadata service answered by a stand-in `fetch`, and the file's mode is read back.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

from droplets.cloud_init import ENV_FILE, WorkerBootstrap, render_user_data

BOOTSTRAP = WorkerBootstrap(
    cluster_name="voiceq",
    node_type="gpu_l40s",
    head_address="10.116.0.2:6379",
    resources={"CPU": 8, "GPU": 1},
    gpu_runtime="cuda",
    environment={"CONVEX_DEPLOY_KEY": "prod:secret-value"},
)


def env_file_block(script: str) -> str:
    """From creating the config directory to the last change of the file's mode."""
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("install -d ") and "/etc/voiceq" in line)
    end = max(i for i, line in enumerate(lines) if line.startswith("chmod ") and ENV_FILE in line)
    return "\n".join(lines[start : end + 1])


def test_the_env_file_is_readable_by_root_only(tmp_path: Path) -> None:
    block = env_file_block(render_user_data(BOOTSTRAP))
    root = tmp_path / "root"
    root.mkdir()
    block = block.replace("/etc/voiceq", str(root / "etc" / "voiceq"))
    (root / "etc").mkdir()
    script = "\n".join([
        "set -euo pipefail",
        "umask 022",  # cloud-init's usual umask: what the script must not rely on
        'DROPLET_ID=4242; PRIVATE_IP=10.116.0.9',
        block,
    ])
    subprocess.run(["bash", "-c", script], check=True)
    env_file = root / "etc" / "voiceq" / Path(ENV_FILE).name
    mode = stat.S_IMODE(os.stat(env_file).st_mode)
    assert mode == 0o600, oct(mode)
    directory_mode = stat.S_IMODE(os.stat(env_file.parent).st_mode)
    assert directory_mode & 0o077 == 0, oct(directory_mode)
    text = env_file.read_text()
    assert 'CONVEX_DEPLOY_KEY="prod:secret-value"' in text and "VOICEQ_DROPLET_ID=4242" in text


def test_the_file_is_private_before_anything_is_written_to_it() -> None:
    # A file created by `cat >` under umask 022 is world-readable until a later chmod.
    block = env_file_block(render_user_data(BOOTSTRAP))
    first_write = next(i for i, line in enumerate(block.splitlines()) if re.match(rf"cat >{re.escape(ENV_FILE)}", line))
    before = "\n".join(block.splitlines()[:first_write])
    assert f"install -m 0600 /dev/null {ENV_FILE}" in before
