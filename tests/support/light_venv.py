"""A fresh virtual environment with only the light client (clients/python) and httpx in it,
made offline: the wheel is built from the repository without build isolation, and httpx and
its dependencies are linked in from the running environment (nothing is downloaded)."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _requirements(dist: str) -> list[str]:
    names = []
    for req in md.requires(dist) or []:
        if "extra ==" in req:
            continue
        names.append(re.split(r"[\s;<>=!~\[]", req, maxsplit=1)[0])
    return names


def _closure(root: str) -> set[str]:
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name.lower() in seen:
            continue
        try:
            md.distribution(name)
        except md.PackageNotFoundError:
            continue  # a marker-excluded dependency (e.g. for another Python version)
        seen.add(name.lower())
        todo.extend(_requirements(name))
    return seen


def _top_level(dist: md.Distribution) -> set[str]:
    tops = set()
    for f in dist.files or []:
        top = f.parts[0]
        if top.endswith((".dist-info", ".egg-info")) or top in ("..", "__pycache__") or top.endswith(".pth"):
            continue
        tops.add(top)
    return tops


def make_light_venv(where: Path) -> Path:
    """The fresh environment's python."""
    wheels = where / "wheels"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Built from a copy (the package link resolved), so the build leaves nothing in the repository.
    source = where / "source"
    shutil.copytree(REPO / "clients" / "python", source, symlinks=False,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", str(source), "-w", str(wheels)], check=True, env=env, cwd=where, capture_output=True)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    *map(str, wheels.glob("voiceq_client-*.whl"))], check=True, env=env)
    # httpx and what it needs, from this environment: links in a folder a .pth file names.
    deps = where / "deps"
    deps.mkdir()
    for name in _closure("httpx"):
        dist = md.distribution(name)
        for top in _top_level(dist):
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (deps / top).exists():
                (deps / top).symlink_to(source)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, env=env).stdout.strip()
    Path(site, "light_deps.pth").write_text(str(deps) + "\n")
    return python
