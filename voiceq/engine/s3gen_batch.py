"""S3Gen (speech tokens to waveform) for many jobs: the flow batched, the vocoder per job.

Upstream's `S3Gen.inference` takes one job: its flow prepends the voice's prompt tokens to
the new ones, encodes them, and solves the CFM ODE (10 Euler steps, each a classifier-free
guided pass of the U-Net estimator over prompt + new frames); HiFT then turns the mels into
samples. Here the flow runs over a batch of jobs of different voices and lengths:

- each row is [prompt tokens | new tokens], right-padded; the prompt mels go into each row's
  own leading frames of the condition, and each row's output is cut from its own frames;
- the encoder is upstream's, with one change: the padding is zeroed before the pre-lookahead
  convolution (the only layer that looks right), so a row's last tokens see the zeros they
  see alone rather than the padding's activations. Everything after it is causal or masked
  attention, so a padded row computes what it would alone;
- the estimator (causal convolutions, attention masked to the row's frames) is run by
  upstream's own Euler solver, which already takes a batch;
- the ODE's starting noise is drawn per row from the job's seed, so a row's mels do not
  depend on its batch.

HiFT is not batched: its convolutions are not causal, its STFT pads by reflection and it has
no masks, so padding would change the end of every row but the longest. It runs per job,
with the job's seed for its random source.

`flow_mels` with one job is the per-job path, so batched and per-job runs share all code.

Turbo's S3Gen is a meanflow model (`s3gen.meanflow`): the same encoder and estimator, run
for 2 steps of a plain Euler solver from t to the next step r (the estimator takes both), with
no guidance pass, on a linear schedule; upstream's `basic_euler`, here over the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from chatterbox.models.s3gen import S3Gen

N_CFM_STEPS = 10  # upstream's S3Gen.flow_inference default for the (non-meanflow) model
N_MEANFLOW_STEPS = 2  # ChatterboxTurboTTS.generate's n_cfm_timesteps


@dataclass(frozen=True)
class S3GenJob:
    tokens: Tensor  # (n,) long, speech tokens below the speech vocabulary size (6561)
    ref: dict  # the voice's S3Gen reference: Conditionals.gen (prompt_token, prompt_feat, embedding)
    seed: int


def _make_pad_mask(lengths: Tensor, width: int) -> Tensor:
    """(B, width) bool, True where a row has no data."""
    return torch.arange(width, device=lengths.device)[None, :] >= lengths[:, None]


def _encode(encoder, xs: Tensor, lengths: Tensor) -> Tensor:
    """Upstream's `UpsampleConformerEncoder.forward` for padded rows (full context, no
    chunking), zeroing the padding before the look-ahead convolution. xs (B, T, 512)
    -> (B, 2T, 512)."""
    from chatterbox.models.s3gen.utils.mask import add_optional_chunk_mask

    T = xs.size(1)
    masks = ~_make_pad_mask(lengths, T).unsqueeze(1)  # (B, 1, T)
    xs, pos_emb, masks = encoder.embed(xs, masks)  # (B, T, 512)
    chunk_masks = add_optional_chunk_mask(xs, masks, False, False, 0, encoder.static_chunk_size, -1)
    xs = xs * masks.transpose(1, 2).to(xs.dtype)  # the one change (see the module docstring)
    xs = encoder.pre_lookahead_layer(xs)
    xs = encoder.forward_layers(xs, chunk_masks, pos_emb, masks)
    xs = xs.transpose(1, 2).contiguous()  # (B, 512, T)
    xs, lengths = encoder.up_layer(xs, lengths)  # (B, 512, 2T)
    xs = xs.transpose(1, 2).contiguous()  # (B, 2T, 512)
    masks = ~_make_pad_mask(lengths, xs.size(1)).unsqueeze(1)  # (B, 1, 2T)
    xs, pos_emb, masks = encoder.up_embed(xs, masks)
    chunk_masks = add_optional_chunk_mask(
        xs, masks, False, False, 0, encoder.static_chunk_size * encoder.up_layer.stride, -1
    )
    xs = encoder.forward_up_layers(xs, chunk_masks, pos_emb, masks)
    if encoder.normalize_before:
        xs = encoder.after_norm(xs)
    return xs


def _noise(seed: int, frames: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return torch.randn(80, frames, generator=g).to(device=device, dtype=dtype)  # (80, frames)


def default_steps(s3gen: "S3Gen") -> int:
    return N_MEANFLOW_STEPS if s3gen.meanflow else N_CFM_STEPS


def _meanflow_euler(decoder, z: Tensor, t_span: Tensor, mu: Tensor, mask: Tensor, spks: Tensor,
                    cond: Tensor) -> Tensor:
    """Upstream's `CausalConditionalCFM.basic_euler` (no guidance) with t and r per row."""
    B = z.size(0)
    x = z
    for t, r in zip(t_span[:-1], t_span[1:]):
        dxdt = decoder.estimator.forward(x, mask=mask, mu=mu, t=t.expand(B), spks=spks, cond=cond, r=r.expand(B))
        x = x + (r - t) * dxdt
    return x


@torch.inference_mode()
def flow_mels(s3gen: "S3Gen", jobs: Sequence[S3GenJob], n_timesteps: int | None = None) -> list[Tensor]:
    """The new mels of every job, each (80, frames), from one batched flow pass."""
    n_timesteps = n_timesteps or default_steps(s3gen)
    flow = s3gen.flow
    device, dtype = s3gen.device, s3gen.dtype
    B = len(jobs)

    prompts = [j.ref["prompt_token"].to(device).view(-1).long() for j in jobs]  # each (p_i,)
    prompt_feats = [j.ref["prompt_feat"].to(device=device, dtype=dtype).view(-1, 80) for j in jobs]  # (f_i, 80)
    seqs = [torch.cat([p, j.tokens.to(device).long()]) for p, j in zip(prompts, jobs)]  # (p_i + n_i,)
    lengths = torch.tensor([s.numel() for s in seqs], device=device)  # (B,)
    T = int(max(s.numel() for s in seqs))
    token = torch.zeros(B, T, dtype=torch.long, device=device)  # (B, T)
    for i, s in enumerate(seqs):
        token[i, : s.numel()] = s

    xvec = torch.cat([j.ref["embedding"].to(device=device, dtype=dtype).view(1, -1) for j in jobs])  # (B, 192)
    spks = flow.spk_embed_affine_layer(F.normalize(xvec, dim=1))  # (B, 80)

    valid = ~_make_pad_mask(lengths, T)  # (B, T)
    x = flow.input_embedding(token) * valid.unsqueeze(-1).to(dtype)  # (B, T, 512)
    h = flow.encoder_proj(_encode(flow.encoder, x, lengths))  # (B, 2T, 80)

    frames = 2 * lengths  # (B,) mel frames per row, prompt included
    F_max = 2 * T
    mask = (~_make_pad_mask(frames, F_max)).unsqueeze(1).to(h.dtype)  # (B, 1, 2T)
    cond = torch.zeros(B, 80, F_max, device=device, dtype=h.dtype)  # (B, 80, 2T)
    z = torch.zeros(B, 80, F_max, device=device, dtype=h.dtype)  # (B, 80, 2T)
    frames_h = [2 * s.numel() for s in seqs]
    for i, (pf, job) in enumerate(zip(prompt_feats, jobs)):
        cond[i, :, : pf.size(0)] = pf.T
        z[i, :, : frames_h[i]] = _noise(job.seed, frames_h[i], device, h.dtype)

    t_span = torch.linspace(0, 1, n_timesteps + 1, device=device, dtype=h.dtype)
    mu = h.transpose(1, 2).contiguous()  # (B, 80, 2T)
    if s3gen.meanflow:
        feat = _meanflow_euler(flow.decoder, z, t_span, mu, mask, spks, cond)  # (B, 80, 2T)
    else:
        if flow.decoder.t_scheduler == "cosine":
            t_span = 1 - torch.cos(t_span * 0.5 * torch.pi)
        feat = flow.decoder.solve_euler(z, t_span=t_span, mu=mu, mask=mask, spks=spks, cond=cond)  # (B, 80, 2T)
    return [feat[i, :, pf.size(0) : frames_h[i]] for i, pf in enumerate(prompt_feats)]


@torch.inference_mode()
def vocode(s3gen: "S3Gen", mel: Tensor, seed: int) -> Tensor:
    """HiFT for one job's mels (80, frames), with upstream's fade-in; (samples,) float32."""
    device = mel.device
    devices = [device.index or 0] if device.type == "cuda" else []
    # HiFT's sine source draws its phases and noise from the global generator; a fork
    # seeded per job keeps a job's audio independent of what ran before it.
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        feat = mel.to(dtype=s3gen.dtype)[None]  # (1, 80, frames)
        wav, _ = s3gen.mel2wav.inference(speech_feat=feat, cache_source=torch.zeros(1, 1, 0, device=device))
    fade = s3gen.trim_fade
    n = min(fade.numel(), wav.size(1))
    wav[:, :n] *= fade[:n]
    return wav[0]


def synthesize(s3gen: "S3Gen", jobs: Sequence[S3GenJob], *, batched: bool) -> list[Tensor]:
    """Waveforms (samples,) for every job, in order: the flow in one batch or job by job."""
    if not jobs:
        return []
    if batched:
        mels = flow_mels(s3gen, jobs)
    else:
        mels = [flow_mels(s3gen, [j])[0] for j in jobs]
    return [vocode(s3gen, m, j.seed) for m, j in zip(mels, jobs)]
