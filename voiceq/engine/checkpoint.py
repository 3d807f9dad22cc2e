"""`voiceq make-test-checkpoint DIR`: a random-weight Chatterbox in the hub's file layout.

The model hub is out of reach from CI and from these machines, so tests need weights they can
make. This writes the real modules (VoiceEncoder, S3Gen at full size, T3 with a 2-layer
128-wide Llama backbone) with random weights, plus a tokenizer of the real vocabulary shape.

A random T3 never picks its stop token, and S3Gen costs about a minute per 100 speech tokens on
a small CPU. So the T3 weights are shaped to stop by themselves: one channel of the residual
stream (`STOP_CHANNEL`) is read and written by no layer; the speech position embedding puts a
ramp on it that starts after `stop_after` tokens, and the speech head maps it onto the stop
token. The stop then comes from the model's own logits, through the normal sampling path,
a few tokens after `stop_after`. The manifest also carries a hard cap (`max_speech_tokens`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .loading import CheckpointManifest, build_t3

TINY_LLAMA = dict(
    vocab_size=8,
    max_position_embeddings=8192,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    head_dim=32,
    attn_implementation="sdpa",
    tie_word_embeddings=False,
    hidden_act="silu",
    attention_bias=False,
    attention_dropout=0.0,
    initializer_range=0.02,
    mlp_bias=False,
    model_type="llama",
    pretraining_tp=1,
    rms_norm_eps=1e-05,
    rope_theta=500000.0,
    use_cache=True,
)
STOP_CHANNEL = -1

_SPECIAL = ["[STOP]", "[UNK]", "[SPACE]", "[PAD]", "[SEP]", "[CLS]", "[MASK]"]
_START_ID = 255  # T3Config.start_text_token
_VOCAB_SIZE = 704  # T3Config.text_tokens_dict_size


def write_tokenizer(path: Path) -> None:
    """A character-level `tokenizers` file with Chatterbox's special tokens at their ids
    ([STOP]=0, [START]=255) inside a 704-entry vocabulary."""
    from tokenizers import Tokenizer, models

    chars = [chr(c) for c in range(33, 127)] + list("àáâäçèéêëíîïñóôöúûüß’“”…—–")
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(_SPECIAL)}
    next_id = len(vocab)
    for ch in chars:
        vocab[ch] = next_id
        next_id += 1
    # Fill the ids up to [START] so the vocabulary has no holes.
    while next_id < _START_ID:
        vocab[f"[UNUSED{next_id}]"] = next_id
        next_id += 1
    vocab["[START]"] = _START_ID
    assert len(vocab) <= _VOCAB_SIZE and max(vocab.values()) < _VOCAB_SIZE
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.add_special_tokens(_SPECIAL + ["[START]"])
    tok.save(str(path))
    # Round-trip check: the file must load the way EnTokenizer loads it.
    json.loads(path.read_text())


@torch.no_grad()
def _shape_stop(t3, stop_after: int, ramp: float, gain: float) -> None:
    d = STOP_CHANNEL
    for layer in t3.tfmr.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj):
            proj.weight[:, d] = 0.0  # no layer reads the channel...
        for proj in (attn.o_proj, mlp.down_proj):
            proj.weight[d, :] = 0.0  # ...and none writes it
    t3.speech_emb.weight[:, d] = 0.0
    positions = torch.arange(t3.speech_pos_emb.emb.weight.shape[0], dtype=torch.float32)
    t3.speech_pos_emb.emb.weight[:, d] = ramp * (positions - stop_after).clamp(min=0.0)
    t3.tfmr.norm.weight[d] = 1.0
    t3.speech_head.weight[:, d] = 0.0
    t3.speech_head.weight[t3.hp.stop_speech_token, d] = gain


def make_test_checkpoint(
    out_dir: str | Path,
    *,
    seed: int = 0,
    stop_after: int = 16,
    max_speech_tokens: int = 64,
) -> Path:
    """Write a random-weight checkpoint to `out_dir` and return the folder."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.voice_encoder import VoiceEncoder
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    manifest = CheckpointManifest(
        llama=dict(TINY_LLAMA),
        perceiver_dim=TINY_LLAMA["hidden_size"],
        max_speech_tokens=max_speech_tokens,
        description=f"random weights (seed {seed}), tiny T3 that stops after about {stop_after} tokens",
    )

    def save(module: torch.nn.Module, name: str) -> None:
        # clone(): safetensors refuses tensors that share storage
        state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(out / name))

    save(VoiceEncoder(), "ve.safetensors")
    t3 = build_t3(manifest)
    _shape_stop(t3, stop_after=stop_after, ramp=0.25, gain=3.0)
    save(t3, "t3_cfg.safetensors")
    save(S3Gen(), "s3gen.safetensors")
    write_tokenizer(out / "tokenizer.json")
    manifest.write(out)
    return out
