"""What a GPU worker installs: the third-party stack of the head's own voiceq, pinned to the
versions the head runs.

voiceq's code itself is not installed on workers: ``python -m deployments.ship`` uploads the
head's checkout as the Serve application's ``working_dir``, so every replica, on the head or on
a droplet that boots hours later, imports the code the head shipped. The worker only needs the
libraries that code imports, at the head's versions (Ray's in particular must match exactly).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import metadata

from packaging.requirements import Requirement

# The node type's setup commands install the GPU's build of these (ROCm or CUDA wheels from
# PyTorch's index); pinning the head's CPU build here would replace it.
GPU_BUILDS = frozenset({"torch", "torchaudio", "torchvision"})


def pin(requirement: str, installed: Callable[[str], str | None]) -> str | None:
    """`requirement` pinned to the installed version (extras kept), or None when it does not
    apply to a worker (an extra's requirement, a GPU build, or a marker that does not hold)."""
    req = Requirement(requirement)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return None
    if req.name.lower() in GPU_BUILDS:
        return None
    version = installed(req.name)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    if version is None:
        return str(req)
    return f"{req.name}{extras}=={version}"


def pinned_requirements(requirements: Iterable[str], installed: Callable[[str], str | None]) -> tuple[str, ...]:
    return tuple(p for p in (pin(r, installed) for r in requirements) if p is not None)


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def worker_requirements(distribution: str = "voiceq") -> tuple[str, ...]:
    """The head's `distribution` requirements, pinned to the head's installed versions."""
    return pinned_requirements(metadata.requires(distribution) or (), _installed_version)
