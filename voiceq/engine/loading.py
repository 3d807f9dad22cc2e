"""Load Chatterbox from the model hub or from a local checkpoint folder.

The folder has the hub's layout (`ve.safetensors`, `t3_cfg.safetensors`, `s3gen.safetensors`,
`tokenizer.json`, optional `conds.pt`). An optional `voiceq.json` beside them describes a
non-default T3 backbone (the random-weight test checkpoints use a tiny Llama) and a
speech-token cap the checkpoint carries; without it the published architecture is built,
exactly as `ChatterboxTTS.from_local` does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("voiceq.engine")

HUB_REPO_ID = "ResembleAI/chatterbox"
HUB_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt")
MANIFEST = "voiceq.json"


@dataclass(frozen=True)
class CheckpointManifest:
    """What `voiceq.json` may say about a checkpoint. Every field is optional."""

    llama: dict[str, Any] | None = None  # a LlamaConfig dict for T3's backbone
    perceiver_dim: int | None = None  # width of T3's perceiver resampler when not 1024
    max_speech_tokens: int | None = None  # a cap on speech tokens per utterance
    description: str = ""

    @classmethod
    def read(cls, ckpt_dir: Path) -> CheckpointManifest:
        path = ckpt_dir / MANIFEST
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(
            llama=data.get("llama"),
            perceiver_dim=data.get("perceiver_dim"),
            max_speech_tokens=data.get("max_speech_tokens"),
            description=data.get("description", ""),
        )

    def write(self, ckpt_dir: Path) -> None:
        data = {
            "llama": self.llama,
            "perceiver_dim": self.perceiver_dim,
            "max_speech_tokens": self.max_speech_tokens,
            "description": self.description,
        }
        (ckpt_dir / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")


def llama_config_name(llama: dict[str, Any]) -> str:
    return "voiceq_{hidden_size}x{num_hidden_layers}".format(**llama)


def build_t3(manifest: CheckpointManifest):
    """A T3 of the checkpoint's shape, random weights (load the state dict after)."""
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
    from chatterbox.models.t3.modules.perceiver import Perceiver
    from chatterbox.models.t3.modules.t3_config import T3Config

    hp = T3Config.english_only()
    if manifest.llama is not None:
        name = llama_config_name(manifest.llama)
        LLAMA_CONFIGS.setdefault(name, dict(manifest.llama))
        hp.llama_config_name = name
    t3 = T3(hp)
    if manifest.perceiver_dim is not None and manifest.perceiver_dim != 1024:
        # Upstream hard-codes a 1024-wide perceiver; a narrower backbone needs a narrower one.
        dim = manifest.perceiver_dim
        t3.cond_enc.perceiver = Perceiver(pre_attention_query_size=dim, embedding_dim=dim)
    return t3


def resolve_checkpoint(ckpt_dir: Path | None) -> Path:
    """The local checkpoint folder, or the hub snapshot (downloaded on first use)."""
    if ckpt_dir is not None:
        missing = [f for f in HUB_FILES[:4] if not (Path(ckpt_dir) / f).exists()]
        if missing:
            raise FileNotFoundError(f"checkpoint folder {ckpt_dir} lacks {', '.join(missing)}")
        return Path(ckpt_dir)
    from huggingface_hub import hf_hub_download

    local_path = None
    for name in HUB_FILES:
        local_path = hf_hub_download(repo_id=HUB_REPO_ID, filename=name)
    assert local_path is not None
    return Path(local_path).parent


def load_chatterbox(ckpt_dir: Path | None, device: str):
    """Build `ChatterboxTTS` from a checkpoint folder (or the hub) on `device`."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.tokenizers import EnTokenizer
    from chatterbox.models.voice_encoder import VoiceEncoder
    from chatterbox.tts import ChatterboxTTS, Conditionals
    from safetensors.torch import load_file

    root = resolve_checkpoint(ckpt_dir)
    manifest = CheckpointManifest.read(root)
    map_location = "cpu"

    ve = VoiceEncoder()
    ve.load_state_dict(load_file(root / "ve.safetensors", device=map_location))
    ve.to(device).eval()

    t3 = build_t3(manifest)
    t3_state = load_file(root / "t3_cfg.safetensors", device=map_location)
    if "model" in t3_state:
        t3_state = t3_state["model"][0]
    t3.load_state_dict(t3_state)
    t3.to(device).eval()

    s3gen = S3Gen()
    s3gen.load_state_dict(load_file(root / "s3gen.safetensors", device=map_location), strict=False)
    s3gen.to(device).eval()

    tokenizer = EnTokenizer(str(root / "tokenizer.json"))
    conds = None
    if (root / "conds.pt").exists():
        conds = Conditionals.load(root / "conds.pt", map_location=map_location).to(device)
    model = ChatterboxTTS(t3, s3gen, ve, tokenizer, device, conds=conds)
    log.info("loaded Chatterbox from %s on %s (%s)", root, device, manifest.description or "published architecture")
    return model, manifest


def pick_device(requested: str = "auto") -> tuple[str, str]:
    """(torch device, gpu type for workerInfo). ROCm builds of torch answer to "cuda" too."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("CHATTERBOX_DEVICE asks for a GPU but torch sees none")
        return requested, "rocm" if getattr(torch.version, "hip", None) else "cuda"
    return requested, "cpu"
