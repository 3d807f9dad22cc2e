"""Batched T3 decoding: many generations of different voices, texts and settings in one loop.

Upstream's `T3.inference` decodes one utterance at a time (two rows with classifier-free
guidance) through Hugging Face's Llama, asking for attentions and hidden states every step.
This module runs the same model, T3's own embeddings, heads and Llama layers, over a batch
of rows, as a small decode loop with a preallocated KV cache.

Layout. A job's generation is a `T3Row`. Each row takes one slot of the model batch, its
conditional sequence, plus a second, unconditional one when it uses guidance (`cfg_weight > 0`,
text embeddings zeroed as upstream does). A `SlotDecoder` holds a fixed number of slots and a
KV cache preallocated for the pass; every slot's sequence starts at column 0 (prefix as
upstream builds it: conditioning, text, two start-of-speech tokens), and its k-th speech token
goes to column prefix + k, which is also its rotary position, so a row sees the positions it
would see alone. Columns past a slot's own position are masked. Speech position embeddings
count each row's own generated tokens.

Static shapes. Every decode step runs all slots with the same shapes; a finished row's slots
are freed in place and the next waiting row is prefilled into them (continuous batching), so
nothing is reallocated or compacted while decoding. On CUDA the step is captured as CUDA
graphs (one per attention width, rounded up to 128 columns); a CPU runs it eagerly.

Sampling follows upstream's order per row (guidance, repetition penalty, temperature, min-p,
top-p), with each row's own settings held in tensors. Randomness is per row: every row draws
its uniforms from its own seeded generator before the loop, and picks its token by inverse
CDF, so a row's tokens do not depend on which other rows share its batch, and the loop needs
no host synchronisation per step. A row ends on the stop token or on its own token budget;
finished rows are found at the next check, which is every step on a CPU and every
`check_every` steps on a GPU, where a check costs a synchronisation.

Backbones. The English and multilingual models share this layout (a Llama with rotary
positions, learned speech positions, guidance). Turbo's T3 is a GPT-2 (`T3.is_gpt`): learned
absolute positions added at the input (`wpe`, counted per row from its first real token as
for the rotary ones), no speech position table, no guidance rows, and upstream's
`inference_turbo` samples in another order (temperature, top-k, top-p, then the repetition
penalty over the generated tokens only). `stack_for` picks the stack, `RowSampler` the order.
Multilingual's upstream loop also runs an alignment heuristic on layer 9's attentions that
can force or forbid the stop token; it is not a part of the model's logits and is not run here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # chatterbox imports are heavy; only the type checker needs them here
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.cond_enc import T3Cond

log = logging.getLogger("voiceq.engine")

# Uniforms are kept at most 1 - 2**-23 so that u * c rounds strictly below c for any float32
# total c (c - u * c >= c * 2**-23, at least one spacing of c): the inverse CDF then always
# lands on a token with nonzero probability.
_U_MAX = 1.0 - 2.0**-23


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    min_p: float = 0.05
    top_p: float = 1.0
    repetition_penalty: float = 1.2
    cfg_weight: float = 0.5
    top_k: int = 0  # 0: off (Turbo's upstream default is 1000)

    def check(self) -> None:
        """Refuse settings that upstream's logits processors would refuse or divide by."""
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive number, not {self.temperature}")
        if not (0.0 <= self.min_p <= 1.0):
            raise ValueError(f"min_p must be within [0, 1], not {self.min_p}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be within (0, 1], not {self.top_p}")
        if not (self.repetition_penalty > 0 and math.isfinite(self.repetition_penalty)):
            raise ValueError(f"repetition_penalty must be a positive number, not {self.repetition_penalty}")
        if not (self.cfg_weight >= 0 and math.isfinite(self.cfg_weight)):
            raise ValueError(f"cfg_weight must be a non-negative number, not {self.cfg_weight}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be 0 (off) or positive, not {self.top_k}")


@dataclass(frozen=True)
class T3Row:
    """One generation: a text in a voice, with its own settings, budget and seed."""

    cond: "T3Cond"  # speaker_emb (1, 256), cond_prompt_speech_tokens (1, p), emotion_adv (1, 1, 1)
    text_tokens: Tensor  # (T,) long, framed by the start and stop text tokens
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_new_tokens: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class T3Output:
    tokens: Tensor  # (n,) long on the CPU: the generated speech tokens, the stop token left out
    stopped: bool  # True when the stop token ended the row, False when its budget did


# --- prefixes ---------------------------------------------------------------------------


@torch.inference_mode()
def row_prefix(t3: "T3", row: T3Row) -> Tensor:
    """The embedded prefix of a row, exactly as upstream's `T3.inference` feeds it:
    conditioning, text, the start-of-speech token of `prepare_input_embeds` and the one
    `inference` appends, both at speech position 0. (k, L, D) with k = 2 (conditional,
    unconditional) when the row uses guidance, else 1."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    if t3.is_gpt:
        return _gpt_prefix(t3, row)
    hp = t3.hp
    device = t3.device
    guided = row.sampling.cfg_weight > 0.0
    text = row.text_tokens.to(device=device, dtype=torch.long).view(1, -1)  # (1, T)
    if guided:
        text = text.expand(2, -1)  # (2, T): upstream zeroes the second row's text embedding
    # A fresh T3Cond: prepare_conditioning caches the prompt embedding on the object it gets.
    cond = T3Cond(
        speaker_emb=row.cond.speaker_emb,
        cond_prompt_speech_tokens=row.cond.cond_prompt_speech_tokens,
        emotion_adv=row.cond.emotion_adv,
    ).to(device=device, dtype=t3.speech_head.weight.dtype)  # the voice's float32 inputs, in T3's dtype
    bos = torch.full((text.size(0), 1), hp.start_speech_token, dtype=torch.long, device=device)  # (k, 1)
    embeds, _ = t3.prepare_input_embeds(
        t3_cond=cond, text_tokens=text, speech_tokens=bos, cfg_weight=row.sampling.cfg_weight
    )  # (k, L - 1, D)
    bos_embed = t3.speech_emb(bos) + t3.speech_pos_emb.get_fixed_embedding(0)  # (k, 1, D)
    return torch.cat([embeds, bos_embed], dim=1)  # (k, L, D)


def _gpt_prefix(t3: "T3", row: T3Row) -> Tensor:
    """Turbo's prefix, as `inference_turbo` builds it: conditioning (speaker, prompt tokens),
    the text as tokenized (no start/stop framing) and one start-of-speech token, none of them
    with position embeddings (GPT-2 adds its own). (1, L, D)."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    if row.sampling.cfg_weight > 0.0:
        raise ValueError("Turbo has no classifier-free guidance: cfg_weight must be 0")
    device = t3.device
    text = row.text_tokens.to(device=device, dtype=torch.long).view(1, -1)  # (1, T)
    cond = T3Cond(
        speaker_emb=row.cond.speaker_emb,
        cond_prompt_speech_tokens=row.cond.cond_prompt_speech_tokens,
        emotion_adv=row.cond.emotion_adv,
    ).to(device=device, dtype=t3.speech_head.weight.dtype)
    bos = torch.full((1, 1), t3.hp.start_speech_token, dtype=torch.long, device=device)  # (1, 1)
    embeds, _ = t3.prepare_input_embeds(t3_cond=cond, text_tokens=text, speech_tokens=bos, cfg_weight=0.0)
    return embeds  # (1, L, D)


# --- the KV cache ------------------------------------------------------------------------


class KVCache:
    """Keys and values of every layer for a fixed number of slots (model rows), preallocated
    to `length` columns. A slot holds one sequence from column 0: its prefix, then one column
    per generated token. Columns past a slot's own position hold stale data and are masked."""

    def __init__(self, layers: int, rows: int, heads: int, length: int, head_dim: int, *,
                 dtype: torch.dtype, device: torch.device) -> None:
        self.k = torch.zeros(layers, rows, heads, length, head_dim, dtype=dtype, device=device)  # (N, S, H, L, Dh)
        self.v = torch.zeros_like(self.k)  # (N, S, H, L, Dh)

    @property
    def length(self) -> int:
        return self.k.size(3)

    @property
    def slots(self) -> int:
        return self.k.size(1)

    def view(self, slots: int) -> "KVCache":
        """The first `slots` slots, sharing this cache's memory."""
        new = KVCache.__new__(KVCache)
        new.k, new.v = self.k[:, :slots], self.v[:, :slots]
        return new

    def grown(self, length: int) -> "KVCache":
        """A longer cache with this one's columns (admission of a row longer than any so far;
        never during decoding)."""
        new = KVCache.__new__(KVCache)
        new.k = self.k.new_zeros(*self.k.shape[:3], length, self.k.size(4))
        new.v = torch.zeros_like(new.k)
        new.k[:, :, :, : self.length] = self.k
        new.v[:, :, :, : self.length] = self.v
        return new


# --- the model ---------------------------------------------------------------------------


def _rms_norm(x: Tensor, norm) -> Tensor:
    """Hugging Face's `LlamaRMSNorm.forward`, operation for operation, without the module call."""
    dtype = x.dtype
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + norm.variance_epsilon)
    return norm.weight * h.to(dtype)


class T3Stack:
    """T3's Llama backbone and speech head, run against a `KVCache` (no Hugging Face cache,
    mask building or output capture in the loop). Weights are the model's own modules."""

    def __init__(self, t3: "T3") -> None:
        self.t3 = t3
        cfg = t3.tfmr.config
        self.layers = list(t3.tfmr.layers)
        self.heads: int = cfg.num_attention_heads
        self.kv_heads: int = cfg.num_key_value_heads
        self.head_dim: int = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.dtype = t3.speech_head.weight.dtype
        self.device = t3.speech_head.weight.device
        self._rope_table: tuple[Tensor, Tensor] | None = None  # (L, Dh) cos and sin
        self._rope_tables: list[tuple[Tensor, Tensor]] = []  # every table made, kept alive

    def new_cache(self, rows: int, length: int) -> KVCache:
        return KVCache(len(self.layers), rows, self.kv_heads, length, self.head_dim,
                       dtype=self.dtype, device=self.device)

    def kv_bytes_per_token(self) -> int:
        """Cache bytes one sequence needs per token (keys and values of every layer)."""
        return 2 * len(self.layers) * self.kv_heads * self.head_dim * torch.finfo(self.dtype).bits // 8

    def _layers(self, x: Tensor, positions: Tensor, kv, mask: Tensor) -> Tensor:
        """Run the layers over x (R, S, D) at rotary positions (R, S); `kv(i, k, v)` stores
        layer i's new keys and values and returns the keys and values to attend to; mask
        (R or 1, 1, S, keys) the keys each query may see. Returns the final hidden states."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        R, S, _ = x.shape
        cos, sin = self.t3.tfmr.rotary_emb(x, positions)  # (R, S, Dh) each
        gqa = self.heads != self.kv_heads
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)  # (R, S, D)
            q = attn.q_proj(h).view(R, S, self.heads, self.head_dim).transpose(1, 2)  # (R, H, S, Dh)
            k = attn.k_proj(h).view(R, S, self.kv_heads, self.head_dim).transpose(1, 2)  # (R, Hkv, S, Dh)
            v = attn.v_proj(h).view(R, S, self.kv_heads, self.head_dim).transpose(1, 2)  # (R, Hkv, S, Dh)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            keys, values = kv(i, k, v)
            o = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=attn.scaling,
                                               enable_gqa=gqa)  # (R, H, S, Dh)
            x = x + attn.o_proj(o.transpose(1, 2).reshape(R, S, self.heads * self.head_dim))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return x

    def _norm(self, hidden: Tensor) -> Tensor:
        return self.t3.tfmr.norm(hidden)

    def prefill(self, prefixes: Sequence[Tensor], slots: Tensor, cache: KVCache) -> Tensor:
        """Write prefixes (each (L_r, D)) into cache slots `slots` (R,) from column 0, right
        padded to the longest: a real query sees only earlier columns, so the padding after a
        prefix changes nothing of it, and the columns it fills are masked or overwritten later.
        Returns the speech logits after each prefix, (R, V)."""
        R = len(prefixes)
        lengths = torch.tensor([p.size(0) for p in prefixes], device=self.device)  # (R,)
        P = max(p.size(0) for p in prefixes)
        x = torch.zeros(R, P, prefixes[0].size(-1), dtype=self.dtype, device=self.device)  # (R, P, D)
        for r, p in enumerate(prefixes):
            x[r, : p.size(0)] = p
        cols = torch.arange(P, device=self.device)  # (P,)
        positions = cols[None, :].expand(R, P)  # (R, P): every slot counts from its first column
        causal = (cols[None, :] <= cols[:, None])[None, None]  # (1, 1, P, P): query row, key column

        def kv(i: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
            cache.k[i, :, :, :P].index_copy_(0, slots, k)
            cache.v[i, :, :, :P].index_copy_(0, slots, v)
            return k, v

        x = self._layers(x, positions, kv, causal)  # (R, P, D)
        last = x[torch.arange(R, device=self.device), lengths - 1]  # (R, D)
        return self.t3.speech_head(self._norm(last))  # (R, V)

    def decode(self, tokens: Tensor, steps: Tensor, columns: Tensor, cache: KVCache, keys: int,
               slots: int | None = None, out: Tensor | None = None) -> Tensor:
        """One step for the first `slots` slots (default all), shapes fixed by the slot count and
        `keys`: slot s feeds `tokens[s]`, its `steps[s]`-th generated token (1-based: the speech
        position), at cache column `columns[s]` (also its rotary position), and attends to its
        columns up to that one among the first `keys`. Returns the next logits (S, V), written
        into `out` when given (no copy of a vocabulary-wide tensor per step)."""
        S = tokens.size(0)
        if slots is not None and slots < cache.slots:
            cache = KVCache.view(cache, slots)
        slot = torch.arange(S, device=tokens.device)  # (S,)
        x = self._speech_input(tokens, steps)  # (S, 1, D)
        mask = (torch.arange(keys, device=tokens.device)[None, :] <= columns[:, None])[:, None, None]  # (S, 1, 1, K)

        def kv(i: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
            cache.k[i][slot, :, columns] = k[:, :, 0]
            cache.v[i][slot, :, columns] = v[:, :, 0]
            return cache.k[i, :, :, :keys], cache.v[i, :, :, :keys]

        x = self._step_layers(x, columns, kv, mask, keys)  # (S, 1, D)
        return self._head(self._norm(x[:, -1]), out)  # (S, V)

    def _head(self, hidden: Tensor, out: Tensor | None) -> Tensor:
        head = self.t3.speech_head
        if out is None:
            return head(hidden)
        if head.bias is None and out.dtype == hidden.dtype:  # what F.linear runs for 2-D input, into `out`
            return torch.mm(hidden, head.weight.t(), out=out)
        return out.copy_(head(hidden))

    def _rope(self, columns: Tensor, keys: int) -> tuple[Tensor, Tensor]:
        """cos and sin of rotary positions `columns` (S,) below `keys`, each (S, 1, 1, Dh), looked
        up in a table the model's own rotary embedding computed for every position once (its angles
        are one product per position and frequency, so a row's values do not depend on which
        other positions were computed with it). Tables are kept, never replaced in place: a
        captured graph may read one."""
        if self._rope_table is None or self._rope_table[0].size(0) < keys:
            length = max(1024, 1 << (keys - 1).bit_length())
            dummy = torch.zeros(1, 1, 1, dtype=self.dtype, device=self.device)
            pos = torch.arange(length, device=self.device)[None]  # (1, L)
            cos, sin = self.t3.tfmr.rotary_emb(dummy, pos)  # (1, L, Dh) each
            self._rope_table = (cos[0], sin[0])
            self._rope_tables.append(self._rope_table)
        cos, sin = self._rope_table
        return cos.index_select(0, columns)[:, None, None], sin.index_select(0, columns)[:, None, None]

    def _step_layers(self, x: Tensor, columns: Tensor, kv, mask: Tensor, keys: int) -> Tensor:
        """`_layers` for one new token per slot, x (S, 1, D) at rotary positions `columns`
        (S,) below `keys`: the same operations in the same order, with the rotary angles looked
        up and the modules' weights applied directly (on a CPU the tiny step is mostly per-call cost)."""
        from transformers.models.llama.modeling_llama import rotate_half

        S = x.size(0)
        H, Hkv, Dh = self.heads, self.kv_heads, self.head_dim
        cos, sin = self._rope(columns, keys)  # (S, 1, 1, Dh)
        gqa = H != Hkv
        for i, layer in enumerate(self.layers):
            attn, mlp = layer.self_attn, layer.mlp
            h = _rms_norm(x, layer.input_layernorm)  # (S, 1, D)
            q = F.linear(h, attn.q_proj.weight, attn.q_proj.bias).view(S, 1, H, Dh).transpose(1, 2)  # (S, H, 1, Dh)
            k = F.linear(h, attn.k_proj.weight, attn.k_proj.bias).view(S, 1, Hkv, Dh).transpose(1, 2)
            v = F.linear(h, attn.v_proj.weight, attn.v_proj.bias).view(S, 1, Hkv, Dh).transpose(1, 2)
            q = (q * cos) + (rotate_half(q) * sin)
            k = (k * cos) + (rotate_half(k) * sin)
            keys, values = kv(i, k, v)
            o = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=attn.scaling,
                                               enable_gqa=gqa)  # (S, H, 1, Dh)
            x = x + F.linear(o.transpose(1, 2).reshape(S, 1, H * Dh), attn.o_proj.weight, attn.o_proj.bias)
            h = _rms_norm(x, layer.post_attention_layernorm)
            gate = F.linear(h, mlp.gate_proj.weight, mlp.gate_proj.bias)
            up = F.linear(h, mlp.up_proj.weight, mlp.up_proj.bias)
            x = x + F.linear(mlp.act_fn(gate) * up, mlp.down_proj.weight, mlp.down_proj.bias)
        return x

    def _speech_input(self, tokens: Tensor, steps: Tensor) -> Tensor:
        """The embedding of each slot's latest token at its speech position, (S,) -> (S, 1, D)."""
        t3 = self.t3
        pos = t3.speech_pos_emb.emb.weight.index_select(0, steps)  # (S, D)
        return t3.speech_emb(tokens[:, None]) + pos[:, None]  # (S, 1, D)


class GPT2Stack(T3Stack):
    """Turbo's GPT-2 backbone against a `KVCache`: learned absolute positions (`wpe`) added
    to the input, pre-norm blocks with fused QKV projections, a final LayerNorm."""

    def __init__(self, t3: "T3") -> None:
        self.t3 = t3
        cfg = t3.tfmr.config
        self.layers = list(t3.tfmr.h)
        self.heads = cfg.num_attention_heads
        self.kv_heads = self.heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.dtype = t3.speech_head.weight.dtype
        self.device = t3.speech_head.weight.device

    def _speech_input(self, tokens: Tensor, steps: Tensor) -> Tensor:
        return self.t3.speech_emb(tokens[:, None])  # (S, 1, D): positions come from wpe

    def _step_layers(self, x: Tensor, columns: Tensor, kv, mask: Tensor, keys: int) -> Tensor:
        return self._layers(x, columns[:, None], kv, mask)

    def _norm(self, hidden: Tensor) -> Tensor:
        return self.t3.tfmr.ln_f(hidden)

    def _layers(self, x: Tensor, positions: Tensor, kv, mask: Tensor) -> Tensor:
        R, S, D = x.shape
        x = x + self.t3.tfmr.wpe(positions)  # (R, S, D)
        for i, block in enumerate(self.layers):
            attn = block.attn
            q, k, v = attn.c_attn(block.ln_1(x)).split(D, dim=2)  # (R, S, D) each
            q = q.view(R, S, self.heads, self.head_dim).transpose(1, 2)  # (R, H, S, Dh)
            keys, values = kv(i, k.view(R, S, self.heads, self.head_dim).transpose(1, 2),
                              v.view(R, S, self.heads, self.head_dim).transpose(1, 2))
            o = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                               scale=self.head_dim**-0.5)  # (R, H, S, Dh)
            x = x + attn.c_proj(o.transpose(1, 2).reshape(R, S, D))
            x = x + block.mlp(block.ln_2(x))
        return x


def stack_for(t3: "T3") -> T3Stack:
    """The decode stack of a T3's backbone."""
    return GPT2Stack(t3) if t3.is_gpt else T3Stack(t3)


# --- sampling ----------------------------------------------------------------------------


def _uniforms(seed: int, n: int) -> Tensor:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return torch.rand(n, generator=g).clamp_(max=_U_MAX)  # (n,)


@dataclass(frozen=True)
class _Settings:
    """Per-row sampling settings of the rows being sampled, (m, 1) each; `partner` (m,) the
    slot each row reads as its unconditional logits; `rows` (m,) their slots, None for all."""

    rows: Tensor | None
    temperature: Tensor
    log_min_p: Tensor
    top_p_cut: Tensor
    penalty: Tensor
    cfg_weight: Tensor
    top_k_index: Tensor
    partner: Tensor


class RowSampler:
    """Per-row logits processing and sampling over a fixed set of model rows (slots).

    A generation's conditional row samples; a guided generation's unconditional row is its
    `partner` (guidance reads it), and is fed the conditional row's tokens (`source`). Slots
    without a generation sample with neutral settings and their draws are ignored. Built from
    `rows` alone it lays them out as [conditional rows 0..n-1, unconditional rows of the
    guided ones]; `assign` puts generations in given slots later (continuous batching).
    `turbo` selects `inference_turbo`'s order: temperature, top-k, top-p, then the repetition
    penalty, over the start token for the first draw and over the generated tokens after it."""

    def __init__(self, rows: Sequence[T3Row], vocab: int, start_token: int, device: torch.device,
                 dtype: torch.dtype, *, turbo: bool = False, slots: int | None = None,
                 width: int | None = None) -> None:
        guided = [i for i, r in enumerate(rows) if r.sampling.cfg_weight > 0.0]
        n = slots if slots is not None else len(rows) + len(guided)
        width = width if width is not None else max([r.max_new_tokens for r in rows] or [1])
        self.turbo = turbo
        self.vocab = vocab
        self.start_token = start_token
        self.device = device

        def col(value: float) -> Tensor:
            return torch.full((n, 1), value, dtype=dtype, device=device)  # (n, 1)

        self.temperature = col(1.0)
        self.log_min_p = col(-math.inf)  # min_p = 0 keeps all
        self.top_p_cut = col(0.0)
        self.penalty = col(1.0)
        self.cfg_weight = col(0.0)
        self.top_k_index = torch.full((n, 1), vocab - 1, dtype=torch.long, device=device)  # k-th best, 0-based
        self.budget = torch.zeros(n, dtype=torch.long, device=device)  # (n,)
        self.partner = torch.arange(n, device=device)  # (n,): the row guidance reads as unconditional
        self.source = torch.arange(n, device=device)  # (n,): the row whose token each row is fed
        # Host flags, only ever switched on: a filter applied to a row that does not ask for it
        # keeps that row's tokens (top-p at 1 removes only zero-probability tokens; top-k off
        # keeps the vocabulary).
        self.use_top_k = False
        self.use_top_p = False
        self.k_max = 1
        # Upstream's repetition penalty looks at the tokens so far, starting with the
        # start-of-speech token: column 0 here, column k + 1 the k-th generated token.
        self.history = torch.full((n, width + 1), start_token, dtype=torch.long, device=device)  # (n, 1 + width)
        self.u = torch.zeros(n, width, device=device)  # (n, width)
        self._subset: _Settings | None = None  # the settings of the last subset of rows sampled
        if rows:
            uncond = {g: len(rows) + k for k, g in enumerate(guided)}
            self.assign(list(range(len(rows))), [uncond.get(i) for i in range(len(rows))], rows)

    @property
    def n(self) -> int:
        return self.budget.numel()

    @property
    def width(self) -> int:
        return self.u.size(1)

    def assign(self, cond: Sequence[int], uncond: Sequence[int | None], rows: Sequence[T3Row]) -> None:
        """Put generations `rows` in slots `cond` (their unconditional rows, if guided, in
        `uncond`), with fresh history and their own uniforms."""
        dev = self.device
        self._subset = None
        idx = torch.tensor(list(cond), dtype=torch.long, device=dev)  # (m,)

        def put(t: Tensor, values: list[float]) -> None:
            t.index_copy_(0, idx, torch.tensor(values, dtype=t.dtype, device=dev).view(-1, *t.shape[1:]))

        put(self.temperature, [r.sampling.temperature for r in rows])
        put(self.log_min_p, [math.log(r.sampling.min_p) if r.sampling.min_p > 0 else -math.inf for r in rows])
        put(self.top_p_cut, [1.0 - r.sampling.top_p for r in rows])
        put(self.penalty, [r.sampling.repetition_penalty for r in rows])
        put(self.cfg_weight, [r.sampling.cfg_weight for r in rows])
        put(self.top_k_index, [min(r.sampling.top_k or self.vocab, self.vocab) - 1 for r in rows])
        put(self.budget, [r.max_new_tokens for r in rows])
        self.use_top_k |= any(r.sampling.top_k > 0 for r in rows)
        self.use_top_p |= any(r.sampling.top_p < 1.0 for r in rows)
        self.k_max = max([self.k_max] + [min(r.sampling.top_k or self.vocab, self.vocab) for r in rows])
        self.history.index_fill_(0, idx, self.start_token)
        u = torch.zeros(len(rows), self.width)
        for i, r in enumerate(rows):
            u[i, : r.max_new_tokens] = _uniforms(r.seed, r.max_new_tokens)
        self.u.index_copy_(0, idx, u.to(dev))
        pairs = [(c, p) for c, p in zip(cond, uncond) if p is not None]
        for c, p in zip(cond, uncond):  # an unguided row guides with itself (weight 0)
            self.partner[c] = c if p is None else p
        for c, p in pairs:
            self.partner[p], self.source[p], self.source[c] = p, c, c

    def _settings(self, rows: Tensor | None) -> _Settings:
        """The settings of the rows to sample: every slot (rows None, no copies) or the given
        slots, gathered once per set (a decoder passes the same tensor until its rows change)."""
        if rows is None:
            return _Settings(None, self.temperature, self.log_min_p, self.top_p_cut, self.penalty,
                             self.cfg_weight, self.top_k_index, self.partner)
        cached = self._subset
        if cached is not None and cached.rows is rows:
            return cached
        pick = lambda t: t.index_select(0, rows)  # noqa: E731
        self._subset = _Settings(rows, pick(self.temperature), pick(self.log_min_p), pick(self.top_p_cut),
                                 pick(self.penalty), pick(self.cfg_weight), pick(self.top_k_index),
                                 pick(self.partner))
        return self._subset

    def guide(self, logits: Tensor, s: _Settings | None = None) -> Tensor:
        """Upstream's guidance, cond + w * (cond - uncond), per row; (S, V) -> (m, V) for the
        sampled rows (all S by default). An unguided row has w = 0 and stands for its own
        unconditional row."""
        s = s or self._settings(None)
        cond = logits if s.rows is None else logits.index_select(0, s.rows)
        return cond + s.cfg_weight * (cond - logits.index_select(0, s.partner))

    def _steps(self, step: int | Tensor, s: _Settings) -> Tensor:
        if isinstance(step, int):
            m = self.n if s.rows is None else s.rows.numel()
            return torch.full((m,), step, dtype=torch.long, device=self.history.device)
        return step

    def _penalize(self, g: Tensor, seen: Tensor, s: _Settings) -> Tensor:
        """Upstream's repetition penalty over the token ids `seen` (m, s), in place on g (a
        tensor of the sampler's own); repeats allowed: they get the same value."""
        score = g.gather(1, seen)
        return g.scatter_(1, seen, torch.where(score < 0, score * s.penalty, score / s.penalty))

    def _seen(self, step: Tensor, span: int, s: _Settings) -> Tensor:
        """The token ids each row's penalty looks at, (m, span): its history columns as
        upstream slices them (Llama: start token and generated ones; Turbo: the start token
        for the first draw, then the generated ones), the other columns standing in for a
        column that is in the set (the same id twice is penalized once)."""
        hist = self.history[:, :span]  # (n, span)
        if s.rows is not None:
            hist = hist.index_select(0, s.rows)  # (m, span)
        cols = torch.arange(span, device=hist.device)[None, :]  # (1, span)
        if self.turbo:
            lo = (step > 0).long()  # (m,)
            valid = (cols >= lo[:, None]) & (cols <= step[:, None])
            anchor = hist.gather(1, lo[:, None])  # (m, 1)
        else:
            valid = cols <= step[:, None]
            anchor = hist[:, :1]
        return torch.where(valid, hist, anchor)

    def _top_p(self, g: Tensor, s: _Settings) -> Tensor:
        sorted_logits, order = torch.sort(g, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (m, V)
        drop_sorted = cumulative <= s.top_p_cut
        drop_sorted[:, -1] = False
        return g.masked_fill(drop_sorted.scatter(1, order, drop_sorted), -math.inf)

    def _top_k_top_p(self, g: Tensor, s: _Settings) -> Tensor:
        """Upstream's top-k then top-p, from one partial sort: only the k_max best logits can
        survive top-k, so top-p's sorted cumulative mass is computed over those alone (a full
        sort of the vocabulary per step cost more than the model's step on a CPU). Ties with the
        k-th logit are kept within the k_max best, as upstream keeps them."""
        vals, idx = g.topk(self.k_max, dim=-1)  # (m, k) descending
        kth = vals.gather(1, s.top_k_index.clamp(max=self.k_max - 1))  # (m, 1)
        vals = vals.masked_fill(vals < kth, -math.inf)
        if self.use_top_p:
            ascending = vals.flip(-1)  # upstream sorts ascending; top-k's removals come first
            cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)  # (m, k)
            drop = cumulative <= s.top_p_cut
            drop[:, -1] = False
            vals = vals.masked_fill(drop.flip(-1), -math.inf)
        return torch.full_like(g, -math.inf).scatter(1, idx, vals)

    def _filtered(self, logits: Tensor, steps: Tensor, span: int | None, s: _Settings
                  ) -> tuple[Tensor, Tensor | None]:
        """The processed logits of the sampled rows, and their row maxima when known (the
        Llama order's filters never remove a row's best token, so its maximum is the one
        min-p computed: the draw reuses it instead of another pass over the vocabulary)."""
        span = self.history.size(1) if span is None else min(span, self.history.size(1))
        g = self.guide(logits, s)  # (m, V), the sampler's own tensor: filters work in place
        if self.turbo:
            g = g.div_(s.temperature)
            if self.use_top_k:
                g = self._top_k_top_p(g, s)
            elif self.use_top_p:
                g = self._top_p(g, s)
            return self._penalize(g, self._seen(steps, span, s), s), None
        g = self._penalize(g, self._seen(steps, span, s), s)
        g = g.div_(s.temperature)
        # min-p: p_i < min_p * p_max, i.e. g_i < g_max + log(min_p), without a softmax
        top = g.amax(dim=-1, keepdim=True)  # (m, 1)
        g = g.masked_fill_(g < top + s.log_min_p, -math.inf)
        if self.use_top_p:  # at top_p = 1 the filter removes only zero-probability tokens
            g = self._top_p(g, s)
        return g, top

    def _processed(self, logits: Tensor, step: int | Tensor, span: int | None = None,
                   rows: Tensor | None = None) -> Tensor:
        """The logits each row samples from, after its model's processors, (m, V): the slots
        `rows` (all by default). `step`: each sampled row's count of generated tokens (or one
        count for all); `span`: history columns that can matter (at most the largest step + 1;
        all by default)."""
        s = self._settings(rows)
        return self._filtered(logits, self._steps(step, s), span, s)[0]

    def sample(self, logits: Tensor, step: int | Tensor, span: int | None = None,
               rows: Tensor | None = None) -> Tensor:
        """The next token of the slots `rows` (all by default), (m,), from the model's logits
        (n, V); `step`: their own counts (m,). Each row draws its own uniform for its own step
        and writes the token into its history. Only the rows a decoder needs are sampled (a
        guided generation's unconditional slot and free slots are not): the vocabulary-wide
        passes below cost in proportion to the rows on a CPU."""
        s = self._settings(rows)
        steps = self._steps(step, s)
        g, top = self._filtered(logits, steps, span, s)  # (m, V)
        if top is None:
            top = g.amax(dim=-1, keepdim=True)
        # exp(g - max) unnormalised: the draw scales its target by the total instead
        cdf = g.sub_(top).exp_().cumsum_(dim=-1)  # (m, V)
        col = steps.clamp(max=self.width - 1)  # (m,)
        u = self.u.gather(1, col[:, None]) if s.rows is None else self.u[s.rows, col][:, None]  # (m, 1)
        target = u * cdf[:, -1:]  # (m, 1)
        token = torch.searchsorted(cdf, target, right=True).squeeze(1)  # (m,): first cdf above target
        token = token.clamp_(max=cdf.size(1) - 1)
        at = (steps + 1).clamp(max=self.width)  # (m,)
        if s.rows is None:
            self.history.scatter_(1, at[:, None], token[:, None])
        else:
            self.history[s.rows, at] = token
        return token


# --- the decoder -------------------------------------------------------------------------


def _check_every(device: torch.device) -> int:
    # A check reads the done flags on the host: free on a CPU, a stream sync on a GPU.
    return 1 if device.type == "cpu" else 16


def _key_bucket(keys: int, length: int, device: torch.device) -> int:
    """Attention width of a step: exact on a CPU (eager), rounded up to a multiple of 128 on a
    GPU so that a few captured graphs serve every step of a pass."""
    if device.type == "cpu":
        return keys
    return min(length, -(-keys // 128) * 128)


class _GraphedDecode:
    """The decode step captured as CUDA graphs, one per attention width: the step's inputs are
    copied into static buffers and the graph replayed (no Python or kernel launches per layer).
    The cache is the decoder's; a grown cache needs a new instance."""

    def __init__(self, stack: T3Stack, cache: KVCache) -> None:
        S = cache.slots
        dev = stack.device
        self.stack, self.cache = stack, cache
        self.tokens = torch.zeros(S, dtype=torch.long, device=dev)
        self.steps = torch.zeros(S, dtype=torch.long, device=dev)
        self.columns = torch.zeros(S, dtype=torch.long, device=dev)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, Tensor]] = {}

    def __call__(self, tokens: Tensor, steps: Tensor, columns: Tensor, keys: int) -> Tensor:
        self.tokens.copy_(tokens)
        self.steps.copy_(steps)
        self.columns.copy_(columns)
        if keys not in self.graphs:
            def run() -> Tensor:
                return self.stack.decode(self.tokens, self.steps, self.columns, self.cache, keys)

            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up: the same writes the replay makes
                run()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = run()
            self.graphs[keys] = (graph, out)
        graph, out = self.graphs[keys]
        graph.replay()
        return out


class SlotDecoder:
    """A batched T3 decode over a fixed number of model rows (slots) with a KV cache
    preallocated for the pass. Generations are admitted into free slots (their own prefill),
    every step runs all slots with the same shapes, and a finished generation's slots are
    freed in place for the next one: nothing is reallocated or compacted while decoding, so on
    a GPU the step is captured once as a CUDA graph (`graphs`, default on CUDA; a CPU runs it
    eagerly).

    Each generation is one slot, two with guidance. A slot's sequence starts at column 0; its
    k-th generated token is fed at column prefix + k, which is also its rotary position, so a
    generation sees exactly the positions it would alone, whatever the other slots hold."""

    def __init__(self, t3: "T3", slots: int, length: int, *, ignore_stop: bool = False,
                 check_every: int | None = None, graphs: bool | None = None, max_new_tokens: int = 1000) -> None:
        if slots < 1:
            raise ValueError("a decoder needs at least one slot")
        self.t3 = t3
        self.stack = stack_for(t3)
        dev = self.stack.device
        self.device = dev
        hp = t3.hp
        self.stop = None if ignore_stop else hp.stop_speech_token
        self.every = check_every or _check_every(dev)
        # Logits and sampling in float32 whatever the weights' dtype (see precision.py).
        self.sampler = RowSampler([], hp.speech_tokens_dict_size, hp.start_speech_token, dev, torch.float32,
                                  turbo=t3.is_gpt, slots=slots, width=max_new_tokens)
        self.cache = self.stack.new_cache(slots, length)
        self.graphs = (dev.type == "cuda") if graphs is None else graphs
        self._graphed: _GraphedDecode | None = None
        V = hp.speech_tokens_dict_size
        self.logits = torch.zeros(slots, V, dtype=torch.float32, device=dev)  # (S, V)
        self.steps = torch.zeros(slots, dtype=torch.long, device=dev)  # (S,) tokens generated so far
        self.prefix = torch.ones(slots, dtype=torch.long, device=dev)  # (S,) prefix length (1 in a free slot)
        self.live = torch.zeros(slots, dtype=torch.bool, device=dev)  # (S,) holds a generation (its cond slot)
        self.done = torch.zeros(slots, dtype=torch.bool, device=dev)  # (S,)
        self.produced = torch.zeros(slots, dtype=torch.long, device=dev)  # (S,) tokens written, stop included
        self.stopped = torch.zeros(slots, dtype=torch.bool, device=dev)  # (S,)
        self.out = torch.zeros(slots, max_new_tokens, dtype=torch.long, device=dev)  # (S, width)
        self._free = list(range(slots))  # host: free slots, lowest first
        # host mirror of each live generation: cond slot -> (key, uncond slot, prefix, budget, steps)
        self._rows: dict[int, list] = {}
        self._since_check = 0
        self.steps_run = 0
        self._slot = torch.arange(slots, device=dev)  # (S,)
        self._live_idx: Tensor | None = None  # cond slots of the live generations, while they last

    def _sampled_rows(self) -> Tensor:
        """The slots that draw a token: each live generation's conditional slot, ascending (a
        guided generation's second slot only feeds guidance; a free slot draws nothing)."""
        if self._live_idx is None:
            self._live_idx = torch.tensor(sorted(self._rows), dtype=torch.long, device=self.device)
        return self._live_idx

    # --- admission ----------------------------------------------------------------------

    @property
    def free_slots(self) -> int:
        return len(self._free)

    @property
    def active(self) -> int:
        return len(self._rows)

    @staticmethod
    def slots_for(row: T3Row) -> int:
        return 2 if row.sampling.cfg_weight > 0.0 else 1

    @torch.no_grad()  # whatever the caller's mode: a decode records no autograd graph
    def admit(self, rows: Sequence[tuple[object, T3Row]]) -> list[tuple[object, BaseException]]:
        """Prefill generations (key, row) into free slots; the caller checked they fit
        (`slots_for`). Returns the ones that could not be admitted, with why: a row whose
        prefix cannot be built fails alone."""
        failed: list[tuple[object, BaseException]] = []
        ready: list[tuple[object, T3Row, Tensor]] = []
        for key, row in rows:
            try:
                row.sampling.check()
                if row.max_new_tokens < 1:
                    raise ValueError("max_new_tokens must be at least 1")
                if row.max_new_tokens > self.sampler.width:
                    raise ValueError(f"max_new_tokens={row.max_new_tokens} is over this decoder's "
                                     f"{self.sampler.width}")
                ready.append((key, row, row_prefix(self.t3, row)))
            except Exception as err:
                failed.append((key, err))
        if not ready:
            return failed
        if sum(self.slots_for(r) for _, r, _ in ready) > len(self._free):
            raise RuntimeError("admitted more generations than there are free slots")
        need = max(p.size(1) + r.max_new_tokens for _, r, p in ready)
        if need > self.cache.length:
            self.cache = self.cache.grown(need)
            self._graphed = None
        free = list(self._free)
        cond, uncond, prefixes, slots = [], [], [], []
        for key, row, p in ready:
            c = free.pop(0)
            u = free.pop(0) if p.size(0) == 2 else None
            cond.append(c)
            uncond.append(u)
            prefixes.append(p[0])
            slots.append(c)
            if u is not None:
                prefixes.append(p[1])
                slots.append(u)
        dev = self.device
        idx = torch.tensor(slots, dtype=torch.long, device=dev)
        cidx = torch.tensor(cond, dtype=torch.long, device=dev)
        logits = self.stack.prefill(prefixes, idx, self.cache)  # a failure here leaves every slot as it was
        self._free = free
        for (key, row, p), c, u in zip(ready, cond, uncond):
            self._rows[c] = [key, u, p.size(1), row.max_new_tokens, 0]
        self._live_idx = None
        self.logits.index_copy_(0, idx, logits.to(self.logits.dtype))
        self.sampler.assign(cond, uncond, [r for _, r, _ in ready])
        self.prefix.index_copy_(0, idx, torch.tensor([p.size(0) for p in prefixes], device=dev))
        self.steps.index_fill_(0, idx, 0)
        for t in (self.done, self.stopped):
            t.index_fill_(0, idx, False)
        self.produced.index_fill_(0, idx, 0)
        self.live.index_fill_(0, cidx, True)
        return failed

    # --- decoding -----------------------------------------------------------------------

    @torch.no_grad()
    def advance(self) -> list[tuple[object, T3Output]]:
        """Sample every live generation's next token, feed it, and return the generations that
        finished (their slots are free again)."""
        sampler = self.sampler
        span = max(r[4] for r in self._rows.values()) + 1 if self._rows else 1
        rows = self._sampled_rows()  # (m,)
        token = torch.zeros(self.steps.numel(), dtype=torch.long, device=self.device)  # (S,)
        token.index_copy_(0, rows, sampler.sample(self.logits, self.steps.index_select(0, rows), span, rows))
        active = self.live & ~self.done
        self.out[self._slot, self.steps.clamp(max=self.out.size(1) - 1)] = token
        self.produced += active.long()
        if self.stop is not None:
            hit = active & (token == self.stop)
            self.stopped |= hit
            self.done |= hit
        self.done |= active & (self.steps + 1 >= sampler.budget)
        self.steps += self.live.long()
        for r in self._rows.values():
            r[4] += 1
        self._since_check += 1
        finished = self._finished()
        self.feed(token)
        return finished

    @torch.no_grad()
    def feed(self, token: Tensor) -> Tensor:
        """Run the model one step with each generation's `token` (S,) (its cond slot's entry;
        guidance rows get their generation's); the next logits land in `self.logits`."""
        src = self.sampler.source
        steps = self.steps.index_select(0, src)  # (S,) the fed token's speech position
        columns = self.prefix + steps - 1  # (S,) where it goes
        keys = max([r[2] + r[4] for r in self._rows.values()] or [1])  # the widest live row's columns
        keys = _key_bucket(keys, self.cache.length, self.device)
        tokens = token.index_select(0, src)
        if self.graphs:
            if self._graphed is None:
                self._graphed = _GraphedDecode(self.stack, self.cache)
            try:
                self.logits.copy_(self._graphed(tokens, steps, columns, keys))
            except Exception as err:  # a backend that cannot capture the step: run it eagerly
                log.warning("decode step not captured as a CUDA graph (%r); running it eagerly", err)
                self.graphs, self._graphed = False, None
                self.stack.decode(tokens, steps, columns, self.cache, keys, out=self.logits)
        else:
            # Eager (CPU): the slots past the highest one in use hold nothing and are left out
            # (a view of the cache, no copy); admission fills the lowest free slots first.
            hi = max([max(c, u if u is not None else c) for c, (_, u, *_) in self._rows.items()] or [0]) + 1
            self.stack.decode(tokens[:hi], steps[:hi], columns[:hi], self.cache, keys, hi, out=self.logits[:hi])
        self.steps_run += 1
        return self.logits

    def _finished(self) -> list[tuple[object, T3Output]]:
        """Generations that are over: budgets are known on the host; stops need a look at the
        device, every step on a CPU and every `every` steps (or when a budget ends) on a GPU."""
        ending = [c for c, r in self._rows.items() if r[4] >= r[3]]
        if self.stop is not None and (self._since_check >= self.every or ending):
            self._since_check = 0
            flags = self.done.tolist()
            ending = [c for c in self._rows if flags[c]]
        if not ending:
            return []
        dev = self.device
        idx = torch.tensor(ending, dtype=torch.long, device=dev)
        out_h = self.out.index_select(0, idx).cpu()
        produced_h = self.produced.index_select(0, idx).tolist()
        stopped_h = self.stopped.index_select(0, idx).tolist()
        results: list[tuple[object, T3Output]] = []
        freed: list[int] = []
        self._live_idx = None
        for k, c in enumerate(ending):
            key, u, _, _, _ = self._rows.pop(c)
            toks = out_h[k, : produced_h[k]]
            if stopped_h[k]:
                toks = toks[:-1]
            results.append((key, T3Output(tokens=toks.clone(), stopped=bool(stopped_h[k]))))
            freed += [c] if u is None else [c, u]
        fidx = torch.tensor(freed, dtype=torch.long, device=dev)
        self.live.index_fill_(0, fidx, False)
        self.done.index_fill_(0, fidx, False)
        self.steps.index_fill_(0, fidx, 0)
        self.prefix.index_fill_(0, fidx, 1)
        self.sampler.partner.index_copy_(0, fidx, fidx)
        self.sampler.source.index_copy_(0, fidx, fidx)
        self.sampler.cfg_weight.index_fill_(0, fidx, 0.0)
        self._free = sorted(self._free + freed)
        return results


def prefix_length(t3: "T3", row: T3Row) -> int:
    """About the columns a row's prefix takes, without computing it (sizes a cache; a longer
    prefix grows the cache when it is admitted)."""
    hp = t3.hp
    cond = 1 + (1 if getattr(hp, "emotion_adv", False) else 0)  # speaker (+ emotion)
    prompt = row.cond.cond_prompt_speech_tokens
    if prompt is not None:
        cond += 32 if getattr(hp, "use_perceiver_resampler", False) else prompt.size(-1)
    return cond + row.text_tokens.numel() + 2


@torch.inference_mode()
def generate(
    t3: "T3",
    rows: Sequence[T3Row],
    *,
    ignore_stop: bool = False,
    check_every: int | None = None,
    slots: int | None = None,
    graphs: bool | None = None,
) -> list[T3Output]:
    """Generate speech tokens for every row; one `T3Output` per row, in order.

    `slots` bounds the model rows decoded at once (default: all rows at once); rows beyond it
    wait and take the slots of finished rows (continuous batching). `ignore_stop` runs every
    row to its budget (benchmarks of a random-weight model need a fixed length);
    `check_every` overrides how often finished rows are looked for; `graphs` whether the step
    is captured as CUDA graphs (default: on CUDA)."""
    if not rows:
        return []
    for r in rows:
        r.sampling.check()
        if r.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
    need = [SlotDecoder.slots_for(r) for r in rows]
    width = max(slots or sum(need), max(need))
    length = max(prefix_length(t3, r) for r in rows) + max(r.max_new_tokens for r in rows)
    dec = SlotDecoder(t3, width, length, ignore_stop=ignore_stop, check_every=check_every, graphs=graphs,
                      max_new_tokens=max(r.max_new_tokens for r in rows))
    results: list[T3Output | None] = [None] * len(rows)
    pending = list(range(len(rows)))
    while True:
        batch = []
        room = dec.free_slots
        while pending and need[pending[0]] <= room:
            i = pending.pop(0)
            room -= need[i]
            batch.append((i, rows[i]))
        for i, err in dec.admit(batch):
            raise err
        if not dec.active:
            break
        for i, out in dec.advance():
            results[i] = out  # type: ignore[index]
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]
