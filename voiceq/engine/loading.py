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

from ..models import CHATTERBOX, MULTILINGUAL, TURBO

log = logging.getLogger("voiceq.engine")

HUB_REPO_ID = "ResembleAI/chatterbox"
HUB_FILES = ("ve.safetensors", "t3_cfg.safetensors", "s3gen.safetensors", "tokenizer.json", "conds.pt")
TURBO_REPO_ID = "ResembleAI/chatterbox-turbo"
TURBO_T3 = "t3_turbo_v1.safetensors"
TURBO_S3GEN = "s3gen_meanflow.safetensors"
# The multilingual model lives in the English repo; upstream reads its VE and S3Gen from the
# .pt copies. A folder without them (a test checkpoint) falls back to the safetensors files.
MTL_T3 = "t3_mtl23ls_v2.safetensors"
MTL_TOKENIZER = "grapheme_mtl_merged_expanded_v1.json"
MTL_HUB_FILES = ("ve.pt", MTL_T3, "s3gen.pt", MTL_TOKENIZER, "conds.pt", "Cangjie5_TC.json")
MANIFEST = "voiceq.json"


@dataclass(frozen=True)
class CheckpointManifest:
    """What `voiceq.json` may say about a checkpoint. Every field is optional."""

    llama: dict[str, Any] | None = None  # a LlamaConfig dict for T3's backbone
    gpt2: dict[str, Any] | None = None  # a GPT2Config dict for Turbo's T3 backbone
    stop_position: int | None = None  # Turbo test checkpoints: where their T3 starts to stop
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
            gpt2=data.get("gpt2"),
            stop_position=data.get("stop_position"),
            perceiver_dim=data.get("perceiver_dim"),
            max_speech_tokens=data.get("max_speech_tokens"),
            description=data.get("description", ""),
        )

    def write(self, ckpt_dir: Path) -> None:
        data = {
            "llama": self.llama,
            "gpt2": self.gpt2,
            "stop_position": self.stop_position,
            "perceiver_dim": self.perceiver_dim,
            "max_speech_tokens": self.max_speech_tokens,
            "description": self.description,
        }
        (ckpt_dir / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")


def llama_config_name(llama: dict[str, Any]) -> str:
    return "voiceq_{hidden_size}x{num_hidden_layers}".format(**llama)


def turbo_hp(manifest: CheckpointManifest):
    """Turbo's T3Config, as `ChatterboxTurboTTS.from_local` sets it up."""
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
    from chatterbox.models.t3.modules.t3_config import T3Config

    hp = T3Config(text_tokens_dict_size=50276)
    hp.llama_config_name = "GPT2_medium"
    hp.speech_tokens_dict_size = 6563
    hp.input_pos_emb = None
    hp.speech_cond_prompt_len = 375
    hp.use_perceiver_resampler = False
    hp.emotion_adv = False
    if manifest.gpt2 is not None:
        name = "voiceq_gpt2_{hidden_size}x{n_layer}".format(**manifest.gpt2)
        LLAMA_CONFIGS.setdefault(name, dict(manifest.gpt2))
        hp.llama_config_name = name
    return hp


def build_t3(manifest: CheckpointManifest, model: str = "chatterbox"):
    """A T3 of the checkpoint's shape, random weights (load the state dict after)."""
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.llama_configs import LLAMA_CONFIGS
    from chatterbox.models.t3.modules.perceiver import Perceiver
    from chatterbox.models.t3.modules.t3_config import T3Config

    if model == TURBO:
        return T3(turbo_hp(manifest))
    hp = T3Config.multilingual() if model == MULTILINGUAL else T3Config.english_only()
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


def _state(root: Path, *names: str) -> dict[str, Any]:
    """The first of `names` present in `root`: safetensors, or a torch state dict."""
    from safetensors.torch import load_file

    for name in names:
        path = root / name
        if path.exists():
            if name.endswith(".safetensors"):
                return load_file(path, device="cpu")
            return torch.load(path, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"checkpoint folder {root} lacks {' or '.join(names)}")


def _load_t3(root: Path, manifest: CheckpointManifest, model: str, filename: str, device: str):
    t3 = build_t3(manifest, model)
    state = _state(root, filename)
    if "model" in state:
        state = state["model"][0]
    t3.load_state_dict(state)
    if t3.is_gpt:
        del t3.tfmr.wte  # as upstream: Turbo feeds embeddings, never GPT-2's token ids
    return t3.to(device).eval()


def _load_ve(root: Path, device: str):
    from chatterbox.models.voice_encoder import VoiceEncoder

    ve = VoiceEncoder()
    ve.load_state_dict(_state(root, "ve.pt", "ve.safetensors"))
    return ve.to(device).eval()


def _load_conds(root: Path, device: str):
    from chatterbox.tts import Conditionals

    if (root / "conds.pt").exists():
        return Conditionals.load(root / "conds.pt", map_location="cpu").to(device)
    return None


def load_turbo(ckpt_dir: Path | None, device: str):
    """`ChatterboxTurboTTS` from a folder in the Turbo repo's layout (or the hub)."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.tts_turbo import ChatterboxTurboTTS
    from transformers import AutoTokenizer

    if ckpt_dir is None:
        from huggingface_hub import snapshot_download

        ckpt_dir = Path(snapshot_download(repo_id=TURBO_REPO_ID,
                                          allow_patterns=["*.safetensors", "*.json", "*.txt", "*.pt", "*.model"]))
    root = Path(ckpt_dir)
    manifest = CheckpointManifest.read(root)
    t3 = _load_t3(root, manifest, TURBO, TURBO_T3, device)
    s3gen = S3Gen(meanflow=True)
    s3gen.load_state_dict(_state(root, TURBO_S3GEN), strict=True)
    s3gen.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(root)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ve = _load_ve(root, device)
    model = ChatterboxTurboTTS(t3, s3gen, ve, tokenizer, device, conds=_load_conds(root, device))
    log.info("loaded Chatterbox Turbo from %s on %s (%s)", root, device, manifest.description or "published")
    return model, manifest


def mtl_tokenizer(root: Path):
    """Upstream's `MTLTokenizer` for the folder's grapheme vocabulary, built without a network
    call: upstream's constructor asks the hub for the Chinese (Cangjie) table even when the
    folder has it; here it is read from the folder (the hub snapshot includes it)."""
    import json as _json

    from chatterbox.models.tokenizers.tokenizer import ChineseCangjieConverter, MTLTokenizer
    from tokenizers import Tokenizer

    class LazyCangjie(ChineseCangjieConverter):
        """Upstream's converter, its word segmenter loaded on the first Chinese text (pkuseg
        fetches its model from GitHub on first use; a server without that reach still speaks
        Chinese, unsegmented, as upstream does without pkuseg)."""

        tried = False

        def __call__(self, text: str) -> str:
            if not self.tried:
                self.tried = True
                try:
                    self._init_segmenter()
                except Exception as err:
                    log.warning("Chinese word segmentation unavailable (%s); converting unsegmented", err)
                    self.segmenter = None
            return super().__call__(text)

    tok = MTLTokenizer.__new__(MTLTokenizer)
    tok.tokenizer = Tokenizer.from_file(str(root / MTL_TOKENIZER))
    conv = LazyCangjie.__new__(LazyCangjie)
    conv.word2cj, conv.cj2word, conv.segmenter = {}, {}, None
    table = root / "Cangjie5_TC.json"
    if table.exists():
        for entry in _json.loads(table.read_text(encoding="utf-8")):
            word, code = entry.split("\t")[:2]
            conv.word2cj[word] = code
            conv.cj2word.setdefault(code, []).append(word)
    tok.cangjie_converter = conv
    tok.check_vocabset_sot_eot()
    return tok


def load_multilingual(ckpt_dir: Path | None, device: str):
    """`ChatterboxMultilingualTTS` from a folder in the hub's layout (or the hub)."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.mtl_tts import ChatterboxMultilingualTTS

    if ckpt_dir is None:
        from huggingface_hub import snapshot_download

        ckpt_dir = Path(snapshot_download(repo_id=HUB_REPO_ID, allow_patterns=list(MTL_HUB_FILES)))
    root = Path(ckpt_dir)
    manifest = CheckpointManifest.read(root)
    t3 = _load_t3(root, manifest, MULTILINGUAL, MTL_T3, device)
    s3gen = S3Gen()
    s3gen.load_state_dict(_state(root, "s3gen.pt", "s3gen.safetensors"), strict=False)
    s3gen.to(device).eval()
    model = ChatterboxMultilingualTTS(t3, s3gen, _load_ve(root, device), mtl_tokenizer(root), device,
                                      conds=_load_conds(root, device))
    log.info("loaded Chatterbox Multilingual from %s on %s (%s)", root, device,
             manifest.description or "published")
    return model, manifest


def load_model(name: str, ckpt_dir: Path | None, device: str):
    """(upstream model object, manifest) of a family member by its API name."""
    loaders = {CHATTERBOX: load_chatterbox, TURBO: load_turbo, MULTILINGUAL: load_multilingual}
    return loaders[name](ckpt_dir, device)


def pick_device(requested: str = "auto") -> tuple[str, str]:
    """(torch device, gpu type for workerInfo). ROCm builds of torch answer to "cuda" too."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("CHATTERBOX_DEVICE asks for a GPU but torch sees none")
        return requested, "rocm" if getattr(torch.version, "hip", None) else "cuda"
    return requested, "cpu"
