"""Turbo's meanflow S3Gen batched: each job gets the mels it gets alone, and one job alone is
upstream's meanflow flow (2 plain Euler steps, no guidance) given the same starting noise."""

from __future__ import annotations

import torch

from voiceq.engine import s3gen_batch
from voiceq.engine.s3gen_batch import S3GenJob, flow_mels


def made_up_ref(s3gen, seed: int, prompt_tokens: int) -> dict:
    """An S3Gen reference of the right shapes (embed_ref's output) without a reference clip."""
    g = torch.Generator().manual_seed(seed)
    return {
        "prompt_token": torch.randint(0, 6561, (1, prompt_tokens), generator=g),
        "prompt_token_len": torch.tensor([prompt_tokens]),
        "prompt_feat": torch.randn(1, 2 * prompt_tokens, 80, generator=g),
        "prompt_feat_len": None,
        "embedding": torch.randn(1, 192, generator=g),
    }


@torch.inference_mode()
def test_meanflow_batch_matches_each_job_alone_and_upstream(turbo_engine, monkeypatch):
    s3gen = turbo_engine.model.s3gen
    assert s3gen.meanflow
    g = torch.Generator().manual_seed(1)
    jobs = [
        S3GenJob(torch.randint(0, 6561, (6,), generator=g), made_up_ref(s3gen, 1, 20), seed=21),
        S3GenJob(torch.randint(0, 6561, (3,), generator=g), made_up_ref(s3gen, 2, 35), seed=22),
    ]
    batched = flow_mels(s3gen, jobs)
    alone = [flow_mels(s3gen, [job])[0] for job in jobs]
    for job, b, a in zip(jobs, batched, alone):
        assert b.shape == a.shape == (80, 2 * job.tokens.numel())
        scale = a.abs().max().item()
        assert scale > 0.1
        assert (a - b).abs().max().item() < 1e-5 * scale

    # Upstream draws the new frames' noise first, then the whole row's, and keeps the first
    # draw for the new frames: build that noise and hand it to the batched path.
    job = jobs[0]
    p, n = job.ref["prompt_token"].numel(), job.tokens.numel()
    torch.manual_seed(7)
    first = torch.randn(1, 80, 2 * n)
    second = torch.randn(1, 80, 2 * (p + n))
    z = torch.cat([second[..., : 2 * p], first], dim=2)[0]
    monkeypatch.setattr(s3gen_batch, "_noise", lambda seed, frames, device, dtype: z[:, :frames].to(device, dtype))
    ours = flow_mels(s3gen, [job])[0]
    torch.manual_seed(7)
    upstream = s3gen.flow_inference(job.tokens[None], ref_dict=dict(job.ref), n_cfm_timesteps=2, finalize=True)[0]
    assert torch.allclose(upstream, ours, rtol=0, atol=1e-5)
