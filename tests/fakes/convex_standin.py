"""Start and stop the local Convex stand-in (tests/fakes/convex_standin/server.ts).

    with running_convex_standin() as convex:
        settings = Settings(convex_url=convex.url, convex_deploy_key=convex.admin_key, ...)

The stand-in serves the real convex/ functions through convex-test behind Convex's HTTP API.
It needs `npm ci` to have been run at the repository root (Node 20+).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "tests" / "fakes" / "convex_standin" / "server.ts"
TSX = REPO / "node_modules" / ".bin" / "tsx"


def user_token(claims: dict) -> str:
    """An unsigned JWT carrying these claims (`sub` is the user), for a frontend's identity
    against the stand-in, which decodes but does not verify tokens."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class StandinError(RuntimeError):
    pass


@dataclass
class ConvexStandin:
    url: str
    admin_key: str | None
    process: subprocess.Popen = field(repr=False)
    _stderr: list[str] = field(default_factory=list, repr=False)
    _readers: list[threading.Thread] = field(default_factory=list, repr=False)

    def reset(self) -> None:
        """Empty the database (a fresh in-memory backend), and clear injected faults."""
        httpx.post(f"{self.url}/_standin/reset", timeout=10).raise_for_status()

    def inject_faults(self, *, status: int = 503, count: int = 1, after: bool = False, path: str | None = None) -> None:
        """Answer the next `count` API calls (of function `path`, when given) with HTTP `status`:
        without running them, or (`after`) once they ran: a reply lost after the commit."""
        body: dict = {"status": status, "count": count, "after": after}
        if path is not None:
            body["path"] = path
        httpx.post(f"{self.url}/_standin/faults", json=body, timeout=10).raise_for_status()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stderr_text(self) -> str:
        return "".join(self._stderr)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for reader in self._readers:  # they end at EOF, now that the process is gone
            reader.join(10)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _node_ready() -> None:
    if shutil.which("node") is None:
        raise StandinError("the Convex stand-in needs Node.js 20+ on PATH")
    if not TSX.exists():
        raise StandinError(f"{TSX} is missing: run `npm ci` at {REPO} to install the Convex test tools")


def start_convex_standin(*, admin_key: str | None = None, startup_timeout_s: float = 60.0) -> ConvexStandin:
    """Start a stand-in on a free port and return once it answers. With `admin_key` (default: a
    random one) it accepts only that deploy key for internal functions; pass admin_key="" to
    accept any."""
    _node_ready()
    key = secrets.token_hex(16) if admin_key is None else admin_key
    env = {**os.environ, "CONVEX_STANDIN_ADMIN_KEY": key}
    process = subprocess.Popen(
        [str(TSX), str(SERVER), "--port", "0"],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,  # the server exits when this closes, so it never outlives us
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    ready: list[str] = []
    readers = [
        threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True),  # type: ignore[arg-type]
        # The first stdout line says where it listens; read on to EOF so the pipe never fills.
        threading.Thread(target=lambda: ready.extend(process.stdout), daemon=True),  # type: ignore[arg-type]
    ]
    for reader in readers:
        reader.start()
    standin = ConvexStandin(url="", admin_key=key or None, process=process, _stderr=stderr, _readers=readers)
    deadline = time.monotonic() + startup_timeout_s
    while not ready and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if not ready:
        standin.stop()
        raise StandinError(f"the Convex stand-in did not start: {''.join(stderr).strip() or 'no output'}")
    standin.url = json.loads(ready[0])["url"]
    return standin


@contextlib.contextmanager
def running_convex_standin(*, admin_key: str | None = None, startup_timeout_s: float = 60.0) -> Iterator[ConvexStandin]:
    standin = start_convex_standin(admin_key=admin_key, startup_timeout_s=startup_timeout_s)
    try:
        yield standin
    finally:
        standin.stop()
