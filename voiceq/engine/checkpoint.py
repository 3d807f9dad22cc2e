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

`--model` picks the family member: the multilingual one (the same tiny Llama over a grapheme
vocabulary of 2454 ids with the 23 language tokens) or Turbo (a 2-layer GPT-2, its meanflow
S3Gen, a GPT-2 style byte-level tokenizer). Turbo's T3 has no speech position table, so its
stop ramp rides on GPT-2's absolute positions: it starts at `stop_position` (prefix
included), which the test voices' prefixes (a 5-6 s reference: about 150 positions) stay
under; rows with longer prefixes stop within a few tokens. VE and S3Gen weights already in
the folder are kept (the multilingual model shares the English repo's files), so making
several models into one folder writes S3Gen once.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..models import CHATTERBOX, MULTILINGUAL, MULTILINGUAL_LANGUAGES, TURBO
from .loading import MTL_T3, MTL_TOKENIZER, TURBO_S3GEN, TURBO_T3, CheckpointManifest, build_t3

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
TINY_GPT2 = dict(
    activation_function="gelu_new",
    attn_pdrop=0.0,
    embd_pdrop=0.0,
    resid_pdrop=0.0,
    bos_token_id=50256,
    eos_token_id=50256,
    initializer_range=0.02,
    layer_norm_epsilon=1e-05,
    model_type="gpt2",
    n_ctx=8196,
    n_embd=128,
    hidden_size=128,
    n_head=4,
    n_layer=2,
    n_positions=8196,
    vocab_size=50276,
)
TURBO_TEXT_VOCAB = 50276
MTL_TEXT_VOCAB = 2454

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


def write_mtl_tokenizer(path: Path) -> None:
    """A grapheme `tokenizers` file like the multilingual one: [STOP]=0, [START]=255, the
    language tokens ([en], [fr], ...) as single ids, letters of the 23 languages' scripts
    (NFKD-decomposed, lower case, as MTLTokenizer feeds them), 2454 ids in all."""
    from tokenizers import Tokenizer, models

    vocab: dict[str, int] = {tok: i for i, tok in enumerate(_SPECIAL)}
    ranges = [(33, 127), (0x300, 0x370), (0x3B1, 0x3CA), (0x430, 0x460), (0x5D0, 0x5EB), (0x600, 0x6FF),
              (0x900, 0x97F), (0x1100, 0x11FF), (0x3041, 0x3097), (0x30A1, 0x30FB), (0x4E00, 0x4E80)]
    chars = [chr(c) for lo, hi in ranges for c in range(lo, hi)]
    next_id = len(vocab)
    for ch in chars:
        if next_id == _START_ID:
            vocab["[START]"] = next_id
            next_id += 1
        vocab[ch] = next_id
        next_id += 1
    langs = [f"[{code}]" for code in MULTILINGUAL_LANGUAGES]
    for tok in langs:
        vocab[tok] = next_id
        next_id += 1
    assert next_id <= MTL_TEXT_VOCAB, next_id
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.add_special_tokens(_SPECIAL + ["[START]"] + langs)
    tok.save(str(path))


def write_gpt2_tokenizer(folder: Path) -> None:
    """A GPT-2 style byte-level BPE (`tokenizer.json` + `tokenizer_config.json`) that
    `AutoTokenizer.from_pretrained(folder)` loads as Turbo's tokenizer: the 256 byte symbols,
    `<|endoftext|>` at 50256, unused ids up to Turbo's 50276."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for i in range(len(vocab), TURBO_TEXT_VOCAB):
        vocab[f"<|unused{i}|>"] = i
    del vocab[f"<|unused{50256}|>"]
    vocab["<|endoftext|>"] = 50256
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>", "model_max_length": 8196, "add_prefix_space": False}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


@torch.no_grad()
def _shape_gpt2_stop(t3, stop_position: int, ramp: float, gain: float) -> None:
    """Turbo's stop: the channel is read and written by no block (LayerNorms give it zero
    weight), GPT-2's position table ramps it up from `stop_position`, and the final norm
    and speech head turn it into the stop logit."""
    d = STOP_CHANNEL
    tfmr = t3.tfmr
    for block in tfmr.h:
        for ln in (block.ln_1, block.ln_2):
            ln.weight[d] = 0.0
            ln.bias[d] = 0.0
        # Conv1D weights are (in, out)
        block.attn.c_proj.weight[:, d] = 0.0
        block.attn.c_proj.bias[d] = 0.0
        block.mlp.c_proj.weight[:, d] = 0.0
        block.mlp.c_proj.bias[d] = 0.0
    t3.speech_emb.weight[:, d] = 0.0
    t3.text_emb.weight[:, d] = 0.0
    t3.cond_enc.spkr_enc.weight[d, :] = 0.0
    t3.cond_enc.spkr_enc.bias[d] = 0.0
    positions = torch.arange(tfmr.wpe.weight.shape[0], dtype=torch.float32)
    tfmr.wpe.weight[:, d] = ramp * (positions - stop_position).clamp(min=0.0)
    tfmr.ln_f.weight[d] = 1.0
    tfmr.ln_f.bias[d] = 0.0
    t3.speech_head.weight[:, d] = 0.0
    t3.speech_head.weight[t3.hp.stop_speech_token, d] = gain


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
    model: str = CHATTERBOX,
    seed: int = 0,
    stop_after: int = 16,
    stop_position: int = 180,
    max_speech_tokens: int = 64,
) -> Path:
    """Write a random-weight checkpoint of `model` to `out_dir` and return the folder."""
    from chatterbox.models.s3gen import S3Gen
    from chatterbox.models.voice_encoder import VoiceEncoder
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    def save(module: torch.nn.Module, name: str) -> None:
        # clone(): safetensors refuses tensors that share storage
        state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
        save_file(state, str(out / name))

    if not (out / "ve.safetensors").exists():
        save(VoiceEncoder(), "ve.safetensors")

    if model == TURBO:
        manifest = CheckpointManifest(
            gpt2=dict(TINY_GPT2), stop_position=stop_position, max_speech_tokens=max_speech_tokens,
            description=f"random weights (seed {seed}), tiny GPT-2 T3 that stops after position {stop_position}",
        )
        t3 = build_t3(manifest, TURBO)
        _shape_gpt2_stop(t3, stop_position=stop_position, ramp=0.25, gain=3.0)
        save(t3, TURBO_T3)
        save(S3Gen(meanflow=True), TURBO_S3GEN)
        write_gpt2_tokenizer(out)
        manifest.write(out)
        return out

    manifest = CheckpointManifest(
        llama=dict(TINY_LLAMA),
        perceiver_dim=TINY_LLAMA["hidden_size"],
        max_speech_tokens=max_speech_tokens,
        description=f"random weights (seed {seed}), tiny T3 that stops after about {stop_after} tokens",
    )

    t3 = build_t3(manifest, model)
    _shape_stop(t3, stop_after=stop_after, ramp=0.25, gain=3.0)
    if model == MULTILINGUAL:
        save(t3, MTL_T3)
        write_mtl_tokenizer(out / MTL_TOKENIZER)
    else:
        save(t3, "t3_cfg.safetensors")
        write_tokenizer(out / "tokenizer.json")
    if not (out / "s3gen.safetensors").exists():
        save(S3Gen(), "s3gen.safetensors")
    manifest.write(out)
    return out
