"""Batched T3 decoding: many generations of different voices, texts and settings in one loop.

Upstream's `T3.inference` decodes one utterance at a time (two rows with classifier-free
guidance) through Hugging Face's Llama, asking for attentions and hidden states every step.
This module runs the same model, T3's own embeddings, heads and Llama layers, over a batch
of rows, as a small decode loop with a preallocated KV cache.

Layout. A job's generation is a `T3Row`. Each row puts one sequence in the model batch, its
conditional one, plus a second, unconditional one when it uses guidance (`cfg_weight > 0`,
text embeddings zeroed as upstream does). Prefixes (conditioning, text, two start-of-speech
tokens, exactly as upstream builds them) differ in length, so they are left-padded to a
common width P: every row then writes its k-th speech token at the same cache column P + k,
which keeps each decode step a single column write. Padding keys are masked out of every
attention, and the rotary position of each row counts from its own first real token, so a
row sees the positions it would see alone. Speech position embeddings count generated tokens
and are the same for every row.

Sampling follows upstream's order per row (guidance, repetition penalty, temperature, min-p,
top-p), with each row's own settings held in tensors. Randomness is per row: every row draws
its uniforms from its own seeded generator before the loop, and picks its token by inverse
CDF, so a row's tokens do not depend on which other rows share its batch, and the loop needs
no host synchronisation per step. A row ends on the stop token or on its own token budget;
finished rows are dropped from the batch (cache included) at the next check, which is every
step on a CPU and every `check_every` steps on a GPU, where a check costs a synchronisation.

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

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # chatterbox imports are heavy; only the type checker needs them here
    from chatterbox.models.t3 import T3
    from chatterbox.models.t3.modules.cond_enc import T3Cond

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
    ).to(device=device)
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
    ).to(device=device)
    bos = torch.full((1, 1), t3.hp.start_speech_token, dtype=torch.long, device=device)  # (1, 1)
    embeds, _ = t3.prepare_input_embeds(t3_cond=cond, text_tokens=text, speech_tokens=bos, cfg_weight=0.0)
    return embeds  # (1, L, D)


# --- the KV cache ------------------------------------------------------------------------


class KVCache:
    """Keys and values of every layer for R sequences, preallocated to `length` columns.

    Sequences are left-padded: `pad[r]` columns of row r hold no token and are masked."""

    def __init__(self, layers: int, rows: int, heads: int, length: int, head_dim: int, *,
                 dtype: torch.dtype, device: torch.device) -> None:
        self.k = torch.empty(layers, rows, heads, length, head_dim, dtype=dtype, device=device)  # (N, R, H, L, Dh)
        self.v = torch.empty_like(self.k)  # (N, R, H, L, Dh)
        self.key_valid = torch.zeros(rows, length, dtype=torch.bool, device=device)  # (R, L)
        self.filled = 0  # columns written so far (the same for every row)

    @property
    def length(self) -> int:
        return self.k.size(3)

    def select(self, rows: Tensor, length: int) -> None:
        """Keep only `rows` (an index tensor), in that order, in a cache of `length` columns."""
        n, cols = rows.numel(), self.filled
        k = self.k.new_empty(self.k.size(0), n, self.k.size(2), length, self.k.size(4))
        v = torch.empty_like(k)
        k[:, :, :, :cols] = self.k[:, rows, :, :cols]
        v[:, :, :, :cols] = self.v[:, rows, :, :cols]
        key_valid = self.key_valid.new_zeros(n, length)
        key_valid[:, :cols] = self.key_valid[rows, :cols]
        self.k, self.v, self.key_valid = k, v, key_valid


# --- the model ---------------------------------------------------------------------------


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

    def new_cache(self, rows: int, length: int) -> KVCache:
        return KVCache(len(self.layers), rows, self.kv_heads, length, self.head_dim,
                       dtype=self.dtype, device=self.device)

    def kv_bytes_per_token(self) -> int:
        """Cache bytes one sequence needs per token (keys and values of every layer)."""
        return 2 * len(self.layers) * self.kv_heads * self.head_dim * torch.finfo(self.dtype).bits // 8

    def _forward(self, x: Tensor, positions: Tensor, cache: KVCache, start: int, mask: Tensor) -> Tensor:
        """Run the layers over x (R, S, D) written at cache columns [start, start + S);
        positions (R, S) are the rotary positions, mask (R, 1, S, start + S) the keys each
        query may see. Returns the normed hidden state of the last column, (R, D)."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        R, S, _ = x.shape
        end = start + S
        cos, sin = self.t3.tfmr.rotary_emb(x, positions)  # (R, S, Dh) each
        gqa = self.heads != self.kv_heads
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)  # (R, S, D)
            q = attn.q_proj(h).view(R, S, self.heads, self.head_dim).transpose(1, 2)  # (R, H, S, Dh)
            k = attn.k_proj(h).view(R, S, self.kv_heads, self.head_dim).transpose(1, 2)  # (R, Hkv, S, Dh)
            v = attn.v_proj(h).view(R, S, self.kv_heads, self.head_dim).transpose(1, 2)  # (R, Hkv, S, Dh)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            cache.k[i, :, :, start:end] = k
            cache.v[i, :, :, start:end] = v
            o = F.scaled_dot_product_attention(
                q, cache.k[i, :, :, :end], cache.v[i, :, :, :end], attn_mask=mask, scale=attn.scaling,
                enable_gqa=gqa,
            )  # (R, H, S, Dh)
            x = x + attn.o_proj(o.transpose(1, 2).reshape(R, S, self.heads * self.head_dim))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        cache.filled = end
        return self.t3.tfmr.norm(x[:, -1])  # (R, D)

    def prefill(self, prefixes: Sequence[Tensor], cache: KVCache) -> Tensor:
        """Write the left-padded prefixes (each (L_r, D)) into the cache; return the speech
        logits after each prefix, (R, V), and each row's prefix length, (R,)."""
        R = len(prefixes)
        lengths = torch.tensor([p.size(0) for p in prefixes], device=self.device)  # (R,)
        P = max(p.size(0) for p in prefixes)
        x = torch.zeros(R, P, prefixes[0].size(-1), dtype=self.dtype, device=self.device)  # (R, P, D)
        for r, p in enumerate(prefixes):
            x[r, P - p.size(0):] = p
        pad = P - lengths  # (R,)
        cols = torch.arange(P, device=self.device)  # (P,)
        positions = (cols[None, :] - pad[:, None]).clamp(min=0)  # (R, P)
        cache.key_valid[:, :P] = cols[None, :] >= pad[:, None]
        causal = cols[None, :] <= cols[:, None]  # (P, P): query row, key column
        # A padding query sees only itself: its output is never used, but an all-masked row
        # would give NaNs.
        mask = causal[None] & (cache.key_valid[:, None, :P] | torch.eye(P, dtype=torch.bool, device=self.device))
        hidden = self._forward(x, positions, cache, 0, mask[:, None])  # (R, D)
        return self.t3.speech_head(hidden), lengths  # (R, V), (R,)

    def step(self, tokens: Tensor, step: int, prefix_lengths: Tensor, cache: KVCache) -> Tensor:
        """Feed each row's latest speech token, `step`-th generated (0-based); return the
        next logits (R, V)."""
        x = self._speech_input(tokens, step)  # (R, 1, D)
        col = cache.filled
        cache.key_valid[:, col] = True
        positions = (prefix_lengths + step)[:, None]  # (R, 1): a row's own count of tokens before this one
        mask = cache.key_valid[:, None, None, : col + 1]  # (R, 1, 1, col + 1)
        hidden = self._forward(x, positions, cache, col, mask)
        return self.t3.speech_head(hidden)  # (R, V)

    def _speech_input(self, tokens: Tensor, step: int) -> Tensor:
        """The embedding of each row's `step`-th generated token, (R,) -> (R, 1, D)."""
        t3 = self.t3
        # Indexing the table with a Python int is a view; get_fixed_embedding would build a
        # device tensor from the int, a blocking host-to-device copy on a GPU every step.
        pos = t3.speech_pos_emb.emb.weight[step + 1]  # (D,)
        return t3.speech_emb(tokens[:, None]) + pos  # (R, 1, D)


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

    def _speech_input(self, tokens: Tensor, step: int) -> Tensor:
        return self.t3.speech_emb(tokens[:, None])  # (R, 1, D): positions come from wpe

    def _forward(self, x: Tensor, positions: Tensor, cache: KVCache, start: int, mask: Tensor) -> Tensor:
        R, S, D = x.shape
        end = start + S
        tfmr = self.t3.tfmr
        x = x + tfmr.wpe(positions)  # (R, S, D)
        for i, block in enumerate(self.layers):
            attn = block.attn
            q, k, v = attn.c_attn(block.ln_1(x)).split(D, dim=2)  # (R, S, D) each
            q = q.view(R, S, self.heads, self.head_dim).transpose(1, 2)  # (R, H, S, Dh)
            cache.k[i, :, :, start:end] = k.view(R, S, self.heads, self.head_dim).transpose(1, 2)
            cache.v[i, :, :, start:end] = v.view(R, S, self.heads, self.head_dim).transpose(1, 2)
            o = F.scaled_dot_product_attention(
                q, cache.k[i, :, :, :end], cache.v[i, :, :, :end], attn_mask=mask, scale=self.head_dim**-0.5,
            )  # (R, H, S, Dh)
            x = x + attn.c_proj(o.transpose(1, 2).reshape(R, S, D))
            x = x + block.mlp(block.ln_2(x))
        cache.filled = end
        return tfmr.ln_f(x[:, -1])  # (R, D)


def stack_for(t3: "T3") -> T3Stack:
    """The decode stack of a T3's backbone."""
    return GPT2Stack(t3) if t3.is_gpt else T3Stack(t3)


# --- sampling ----------------------------------------------------------------------------


def _uniforms(seed: int, n: int) -> Tensor:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return torch.rand(n, generator=g).clamp_(max=_U_MAX)  # (n,)


class RowSampler:
    """Per-row logits processing and sampling for n rows, m of them guided.

    Model rows are ordered [conditional rows 0..n-1, unconditional rows of the guided ones].
    `turbo` selects `inference_turbo`'s order: temperature, top-k, top-p, then the
    repetition penalty, over the start token for the first draw and over the generated
    tokens after it."""

    def __init__(self, rows: Sequence[T3Row], vocab: int, start_token: int, device: torch.device,
                 dtype: torch.dtype, *, turbo: bool = False) -> None:
        n = len(rows)
        self.turbo = turbo

        def col(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=dtype, device=device)[:, None]  # (n, 1)

        self.temperature = col([r.sampling.temperature for r in rows])
        self.log_min_p = col([r.sampling.min_p for r in rows]).log()  # -inf for min_p = 0: keeps all
        self.top_p_cut = col([1.0 - r.sampling.top_p for r in rows])
        self.penalty = col([r.sampling.repetition_penalty for r in rows])
        self.cfg_weight = col([r.sampling.cfg_weight for r in rows])
        # top-k as the index of the k-th best logit; k = 0 (off) keeps the whole vocabulary
        self.top_k_index = torch.tensor([min(r.sampling.top_k or vocab, vocab) - 1 for r in rows],
                                        device=device)[:, None]
        self.use_top_k = any(r.sampling.top_k > 0 for r in rows)
        # host int: the most logits any row keeps (a row without top-k keeps the vocabulary)
        self.k_max = max(min(r.sampling.top_k or vocab, vocab) for r in rows)
        self.budget = torch.tensor([r.max_new_tokens for r in rows], device=device)  # (n,)
        self.use_top_p = any(r.sampling.top_p < 1.0 for r in rows)
        width = max(r.max_new_tokens for r in rows)
        # Upstream's repetition penalty looks at the tokens so far, starting with the
        # start-of-speech token: column 0 here, column k + 1 the k-th generated token.
        self.history = torch.full((n, width + 1), start_token, dtype=torch.long, device=device)  # (n, 1 + max budget)
        u = torch.zeros(n, width)
        for i, r in enumerate(rows):
            u[i, : r.max_new_tokens] = _uniforms(r.seed, r.max_new_tokens)
        self.u = u.to(device)  # (n, max budget)
        self.guided = [i for i, r in enumerate(rows) if r.sampling.cfg_weight > 0.0]  # host list
        self._sync_index(device)

    def _sync_index(self, device: torch.device) -> None:
        self.guided_idx = torch.tensor(self.guided, dtype=torch.long, device=device)  # (m,)

    @property
    def n(self) -> int:
        return self.budget.numel()

    def guide(self, logits: Tensor) -> Tensor:
        """Upstream's guidance, cond + w * (cond - uncond), per row; (R, V) -> (n, V).
        An unguided row has w = 0 and stands for its own unconditional row."""
        n = self.n
        cond = logits[:n]  # (n, V)
        if not self.guided:
            return cond
        uncond = cond.index_copy(0, self.guided_idx, logits[n:])  # (n, V)
        return cond + self.cfg_weight * (cond - uncond)

    def _penalize(self, g: Tensor, seen: Tensor) -> Tensor:
        """Upstream's repetition penalty over the token ids `seen` (n, s); repeats allowed:
        they get the same value."""
        score = g.gather(1, seen)
        return g.scatter(1, seen, torch.where(score < 0, score * self.penalty, score / self.penalty))

    def _top_p(self, g: Tensor) -> Tensor:
        sorted_logits, order = torch.sort(g, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (n, V)
        drop_sorted = cumulative <= self.top_p_cut
        drop_sorted[:, -1] = False
        return g.masked_fill(drop_sorted.scatter(1, order, drop_sorted), -math.inf)

    def _top_k_top_p(self, g: Tensor) -> Tensor:
        """Upstream's top-k then top-p, from one partial sort: only the k_max best logits can
        survive top-k, so top-p's sorted cumulative mass is computed over those alone (a full
        sort of the vocabulary per step cost more than the model's step on a CPU). Ties with the
        k-th logit are kept within the k_max best, as upstream keeps them."""
        vals, idx = g.topk(self.k_max, dim=-1)  # (n, k) descending
        kth = vals.gather(1, self.top_k_index.clamp(max=self.k_max - 1))  # (n, 1)
        vals = vals.masked_fill(vals < kth, -math.inf)
        if self.use_top_p:
            ascending = vals.flip(-1)  # upstream sorts ascending; top-k's removals come first
            cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)  # (n, k)
            drop = cumulative <= self.top_p_cut
            drop[:, -1] = False
            vals = vals.masked_fill(drop.flip(-1), -math.inf)
        return torch.full_like(g, -math.inf).scatter(1, idx, vals)

    def _processed(self, logits: Tensor, step: int) -> Tensor:
        """The logits each row samples from, after its model's processors, (n, V)."""
        g = self.guide(logits)  # (n, V)
        if self.turbo:
            g = g / self.temperature
            if self.use_top_k:
                g = self._top_k_top_p(g)
            elif self.use_top_p:
                g = self._top_p(g)
            seen = self.history[:, :1] if step == 0 else self.history[:, 1 : step + 1]  # (n, s)
            return self._penalize(g, seen)
        g = self._penalize(g, self.history[:, : step + 1])
        g = g / self.temperature
        # min-p: p_i < min_p * p_max, i.e. g_i < g_max + log(min_p), without a softmax
        g = g.masked_fill(g < g.amax(dim=-1, keepdim=True) + self.log_min_p, -math.inf)
        if self.use_top_p:  # at top_p = 1 the filter removes only zero-probability tokens
            g = self._top_p(g)
        return g

    def sample(self, logits: Tensor, step: int) -> Tensor:
        """The next token of every row, (n,), from the model's logits (R, V)."""
        g = self._processed(logits, step)  # (n, V)
        # exp(g - max) unnormalised: the draw scales its target by the total instead
        cdf = (g - g.amax(dim=-1, keepdim=True)).exp_().cumsum_(dim=-1)  # (n, V)
        target = self.u[:, step : step + 1] * cdf[:, -1:]  # (n, 1)
        token = torch.searchsorted(cdf, target, right=True).squeeze(1)  # (n,): first cdf above target
        token = token.clamp_(max=cdf.size(1) - 1)
        self.history[:, step + 1] = token
        return token

    def select(self, keep: list[int], device: torch.device) -> list[int]:
        """Keep rows `keep` (host indices, ascending, into the current rows). Returns the
        model rows to keep: the kept conditional rows, then their unconditional rows."""
        n_old = self.n
        uncond_row = {row: n_old + k for k, row in enumerate(self.guided)}
        model_keep = list(keep) + [uncond_row[i] for i in keep if i in uncond_row]
        new_index = {old: new for new, old in enumerate(keep)}
        idx = torch.tensor(keep, dtype=torch.long, device=device)
        for name in ("temperature", "log_min_p", "top_p_cut", "penalty", "cfg_weight", "top_k_index", "budget",
                     "history", "u"):
            setattr(self, name, getattr(self, name).index_select(0, idx))
        self.guided = [new_index[i] for i in self.guided if i in new_index]
        self._sync_index(device)
        return model_keep


# --- the loop ----------------------------------------------------------------------------


def _check_every(device: torch.device) -> int:
    # A check reads the done flags on the host: free on a CPU, a stream sync on a GPU.
    return 1 if device.type == "cpu" else 16


@torch.inference_mode()
def generate(
    t3: "T3",
    rows: Sequence[T3Row],
    *,
    ignore_stop: bool = False,
    check_every: int | None = None,
) -> list[T3Output]:
    """Generate speech tokens for every row; one `T3Output` per row, in order.

    `ignore_stop` runs every row to its budget (benchmarks of a random-weight model need a
    fixed length); `check_every` overrides how often finished rows are looked for."""
    if not rows:
        return []
    for r in rows:
        r.sampling.check()
        if r.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
    hp = t3.hp
    stop = None if ignore_stop else hp.stop_speech_token
    stack = stack_for(t3)
    device = stack.device
    every = check_every or _check_every(device)

    sampler = RowSampler(rows, hp.speech_tokens_dict_size, hp.start_speech_token, device, stack.dtype,
                         turbo=t3.is_gpt)
    n_total = len(rows)
    cond_prefixes = [row_prefix(t3, r) for r in rows]
    prefixes = [p[0] for p in cond_prefixes] + [cond_prefixes[i][1] for i in sampler.guided]
    P = max(p.size(0) for p in prefixes)
    budgets = [r.max_new_tokens for r in rows]  # host copy: budget ends are known without a sync
    cache = stack.new_cache(len(prefixes), P + max(budgets))

    out = torch.zeros(n_total, max(budgets), dtype=torch.long, device=device)  # (N, max budget)
    produced = torch.zeros(n_total, dtype=torch.long, device=device)  # (N,) tokens written, stop included
    stopped = torch.zeros(n_total, dtype=torch.bool, device=device)  # (N,)
    job = list(range(n_total))  # host: the original index of each active row
    job_idx = torch.arange(n_total, device=device)  # (n,)
    done = torch.zeros(n_total, dtype=torch.bool, device=device)  # (n,)

    logits, prefix_len = stack.prefill(prefixes, cache)  # (R, V), (R,)
    step = 0
    while True:
        token = sampler.sample(logits, step)  # (n,)
        active = ~done
        out[job_idx, step] = token
        produced[job_idx] += active.long()
        hit = active & (token == stop) if stop is not None else torch.zeros_like(active)
        stopped[job_idx] |= hit
        done = done | hit | (step + 1 >= sampler.budget)
        step += 1

        # Which rows are still running? Budget ends are known here; stops need a look.
        alive = [i for i, j in enumerate(job) if budgets[j] > step]
        if stop is not None and (step % every == 0 or len(alive) < len(job)):
            flags = done.tolist()
            alive = [i for i in alive if not flags[i]]
        if not alive:
            break
        if len(alive) < len(job):  # drop finished rows: they would cost a full step each
            keep = torch.tensor(alive, dtype=torch.long, device=device)
            model_keep = torch.tensor(sampler.select(alive, device), dtype=torch.long, device=device)
            job = [job[i] for i in alive]
            job_idx, done, token = job_idx[keep], done[keep], token[keep]
            prefix_len = prefix_len[model_keep]
            cache.select(model_keep, P + max(budgets[j] for j in job))
        feed = torch.cat([token, token.index_select(0, sampler.guided_idx)]) if sampler.guided else token  # (R,)
        logits = stack.step(feed, step - 1, prefix_len, cache)

    out_h, produced_h, stopped_h = out.cpu(), produced.tolist(), stopped.tolist()
    results = []
    for j in range(n_total):
        toks = out_h[j, : produced_h[j]]
        if stopped_h[j]:
            toks = toks[:-1]
        results.append(T3Output(tokens=toks.clone(), stopped=bool(stopped_h[j])))
    return results
