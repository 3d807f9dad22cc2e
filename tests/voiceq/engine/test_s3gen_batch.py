"""S3Gen for a batch: the flow batched over voices and lengths gives each job the mels it
gets alone, and one job alone is upstream's flow. (S3Gen is full size: few, tiny runs.)"""

from __future__ import annotations

import torch

from voiceq.engine.s3gen_batch import S3GenJob, flow_mels, vocode


@torch.inference_mode()
def test_batched_flow_matches_each_job_alone_and_upstream(engine, voices):
    s3gen = engine.model.s3gen
    g = torch.Generator().manual_seed(0)
    # Different voices (prompts of 1.5 s and 2.5 s) and different lengths: both padded.
    jobs = [
        S3GenJob(torch.randint(0, 6561, (5,), generator=g), voices[0].gen, seed=11),
        S3GenJob(torch.randint(0, 6561, (3,), generator=g), voices[2].gen, seed=12),
    ]
    batched = flow_mels(s3gen, jobs)
    alone = [flow_mels(s3gen, [job])[0] for job in jobs]
    for job, b, a in zip(jobs, batched, alone):
        # upstream's frames: 2 per token of prompt + new tokens, less the prompt's mel frames
        # (which embed_ref may leave one longer than twice its tokens)
        frames = 2 * (job.ref["prompt_token"].numel() + job.tokens.numel()) - job.ref["prompt_feat"].size(1)
        assert abs(frames - 2 * job.tokens.numel()) <= 1
        assert b.shape == a.shape == (80, frames)
        scale = a.abs().max().item()
        assert scale > 0.1
        assert (a - b).abs().max().item() < 1e-5 * scale  # float32 noise only; padding leaks would be O(1)
    assert not torch.allclose(alone[0][:, :4], alone[1][:, :4])

    # One job alone is upstream's flow, given the same starting noise.
    torch.manual_seed(jobs[1].seed)
    upstream = s3gen.flow_inference(jobs[1].tokens, ref_dict=dict(voices[2].gen), finalize=True)[0]
    assert torch.allclose(upstream, alone[1], rtol=0, atol=1e-6)

    # The vocoder: upstream's HiFT with the job's seed, 480 samples per mel frame.
    wav = vocode(s3gen, alone[1], seed=5)
    assert wav.shape == (480 * alone[1].size(1),)
    torch.manual_seed(5)
    reference, _ = s3gen.hift_inference(alone[1][None], None)
    reference[:, : len(s3gen.trim_fade)] *= s3gen.trim_fade
    assert torch.equal(reference[0], wav)
    assert torch.equal(vocode(s3gen, alone[1], seed=5), wav)  # its randomness is the seed's alone

