"""Throughput of batched Chatterbox inference against upstream's one-job-at-a-time path.

    python benchmarks/batch_throughput.py [--model chatterbox,chatterbox-turbo,...] [--device cpu|cuda]
                                          [--ckpt DIR] [--full-size] [--tokens N] [--batch-sizes 1,4,8,16,32]

`--model` names one or more members of the family (comma-separated; default chatterbox), each
measured against its own upstream class's path and printed as its own table:
- chatterbox-turbo: upstream is `ChatterboxTurboTTS.generate` (`T3.inference_turbo`, one row,
  top-k 1000 / top-p 0.95; three silence tokens; the meanflow S3Gen with 2 steps). Its voices
  are over 5 s, as Turbo requires.
- chatterbox-multilingual: upstream is `ChatterboxMultilingualTTS.generate` (texts in several
  languages). Upstream's loop also runs an alignment analyzer on layer 9's attentions, which
  the 2-layer benchmark T3 does not have: it is switched off on the upstream side, which only
  flatters upstream.

Both sides run on the same checkpoint and device, with the same jobs (several voices and
texts) and the same fixed speech-token budget per job: a random-weight model never stops by
itself (and the test checkpoint's T3 stops after ~20 tokens), so the stop token is switched
off on both sides for the run and every job decodes exactly `--tokens` tokens.

- upstream: what `ChatterboxTTS.generate` does per job (T3.inference with its two CFG rows,
  drop_invalid_tokens, S3Gen.inference, the watermark), job after job. tqdm is disabled,
  which only flatters upstream.
- batched: `ChatterboxEngine.synthesize` over the whole batch (batched T3 decode loop, then
  S3Gen batched or job by job as the engine is configured, the watermark), timed per stage.

`--t3-dtype bfloat16` loads our side's T3 as `VOICEQ_T3_DTYPE=bfloat16` does (on a GPU; a CPU
keeps float32 and the header line says so); upstream runs float32, as it ships.

T3 is timed `--repeats` times on both sides and the best run counts (a shared machine's
noise only ever adds time); S3Gen, the costly stage, runs once per measurement.

S3Gen of the random full-size model costs seconds per job on a CPU, so on a CPU it is measured
only for batches up to `--s3gen-max-batch` (default 4) and for `--upstream-jobs` upstream jobs;
bigger batches time T3 alone and their end-to-end figures are estimated from the measured
per-job S3Gen cost (marked `est`). On a GPU everything is measured by default.

By default the checkpoint is the test checkpoint's files with a plain random tiny T3 (the test
T3 is shaped to stop after ~20 tokens and says nothing else after that); `--full-size` puts a
random T3 of the published size (Llama_520M) in its place.

Mixed-length workload (`--mixed-jobs`, default 48; 0 skips it): jobs of 20 to 400 speech
tokens (uniform, seeded) arrive over time, faster than the decoder can serve them (a queue
that is never empty once it starts), and the T3 stage serves them two ways with the same
number of slots (`--mixed-slots`, default 8):
- static: today's batches: take the jobs that have arrived (up to the slot count), decode the
  batch to its longest job, then take the next batch;
- continuous: one `SlotDecoder`; a job that has arrived takes a finished job's slots after its
  own prefill, while the others keep decoding.
Both print jobs/s (jobs over the time from the first arrival to the last job's end) and the
mean time from arrival to the end of T3. The decode step is timed alone too, with the weights'
bytes it reads per step: on CUDA `--peak-gbs` (the device's memory bandwidth) gives the
fraction of the bandwidth limit. `--mixed-e2e` also runs the whole engine session (S3Gen on the
vocoder thread) over the workload and prints the time to first audio (default on CUDA).

The last line reads `t3_batch16_vs_upstream=<ratio> e2e_batch16_vs_upstream=<ratio>`
(T3 speech tokens/s and end-to-end jobs/s, batch of 16 over upstream, of the first model
measured), then `turbo_t3_batch16_vs_upstream=<ratio>` and
`multilingual_t3_batch16_vs_upstream=<ratio>` for those models when they were measured,
then `continuous_vs_static=<ratio>` (T3 jobs/s of the mixed workload, first model).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # upstream's per-step progress bar, before tqdm loads

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from voiceq.pcm import Clip  # noqa: E402
from voiceq.engine.base import GenerationParams, SynthesisRequest  # noqa: E402
from voiceq.engine.chatterbox import ChatterboxEngine  # noqa: E402
from voiceq.engine.family import engine_class  # noqa: E402
from voiceq.engine.t3_decode import SlotDecoder, T3Row, generate  # noqa: E402
from voiceq.models import MODELS, MULTILINGUAL, TURBO  # noqa: E402

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, and welcome to the voice cloning service. Your sample is ready.",
    "Batching many users' jobs keeps the accelerator busy.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
    "Please leave a message after the tone.",
    "Every job in a batch gets its own voice, text and settings.",
]
LANGUAGES = ["fr", "de", "es", "it", "en", "pt"]
MTL_TEXTS = [
    "Bonjour, et bienvenue au service de clonage de voix.",
    "Guten Tag, die Stimme ist jetzt bereit.",
    "Hola, esta es una prueba del sistema.",
    "Buongiorno, il lavoro è finito.",
    "Hello, and welcome to the voice cloning service.",
    "Olá, obrigado por esperar.",
]
CACHE = Path(os.environ.get("VOICEQ_TEST_CACHE", REPO / ".cache"))


# --- checkpoints -----------------------------------------------------------------------


def tiny_checkpoint() -> Path:
    from voiceq.engine.checkpoint import make_test_checkpoint

    path = CACHE / "test-checkpoint-v1"
    if not (path / ".complete").exists():
        print(f"making the random-weight test checkpoint in {path} (~20 s)", file=sys.stderr)
        make_test_checkpoint(path)
        (path / ".complete").write_text("ok\n")
    return path


def turbo_bench_checkpoint() -> Path:
    """A Turbo checkpoint with a plain random tiny GPT-2 T3 (no stop shaping); the rest (its
    meanflow S3Gen, VE, tokenizer) linked from the Turbo test checkpoint."""
    from safetensors.torch import save_file

    from voiceq.engine.checkpoint import TINY_GPT2, make_test_checkpoint
    from voiceq.engine.loading import TURBO_T3, CheckpointManifest, build_t3

    base = CACHE / "test-checkpoint-turbo-v1"
    if not (base / ".complete").exists():
        make_test_checkpoint(base, model=TURBO)
        (base / ".complete").write_text("ok\n")
    path = CACHE / "bench-turbo-tiny-v1"
    if (path / ".complete").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    manifest = CheckpointManifest(gpt2=dict(TINY_GPT2), description="random weights, tiny GPT-2 T3 without stop shaping")
    t3 = build_t3(manifest, TURBO)
    save_file({k: v.detach().clone().contiguous() for k, v in t3.state_dict().items()}, str(path / TURBO_T3))
    for name in ("ve.safetensors", "s3gen_meanflow.safetensors", "tokenizer.json", "tokenizer_config.json"):
        link = path / name
        if not link.exists():
            link.symlink_to((base / name).resolve())
    manifest.write(path)
    (path / ".complete").write_text("ok\n")
    return path


def multilingual_bench_checkpoint(base: Path) -> Path:
    """A multilingual checkpoint with a plain random tiny Llama T3 (no stop shaping) and the
    test grapheme tokenizer; VE and S3Gen linked from the English test checkpoint."""
    from safetensors.torch import save_file

    from voiceq.engine.checkpoint import TINY_LLAMA, write_mtl_tokenizer
    from voiceq.engine.loading import MTL_T3, MTL_TOKENIZER, CheckpointManifest, build_t3

    path = CACHE / "bench-multilingual-tiny-v1"
    if (path / ".complete").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    manifest = CheckpointManifest(llama=dict(TINY_LLAMA), perceiver_dim=TINY_LLAMA["hidden_size"],
                                  description="random weights, tiny multilingual T3 without stop shaping")
    t3 = build_t3(manifest, MULTILINGUAL)
    save_file({k: v.detach().clone().contiguous() for k, v in t3.state_dict().items()}, str(path / MTL_T3))
    write_mtl_tokenizer(path / MTL_TOKENIZER)
    for name in ("ve.safetensors", "s3gen.safetensors"):
        link = path / name
        if not link.exists():
            link.symlink_to((base / name).resolve())
    manifest.write(path)
    (path / ".complete").write_text("ok\n")
    return path


def bench_checkpoint(base: Path, *, full_size: bool) -> Path:
    """The test checkpoint with a plain random T3: the tiny 2-layer one without the test
    checkpoint's stop shaping (which makes it say nothing but the stop token after ~20
    tokens, so S3Gen would get almost no tokens), or the published architecture (Llama_520M,
    1024-wide perceiver). The voice encoder, S3Gen (full size) and tokenizer are linked."""
    from safetensors.torch import save_file

    from voiceq.engine.checkpoint import TINY_LLAMA
    from voiceq.engine.loading import CheckpointManifest, build_t3

    if full_size:
        path = CACHE / "bench-full-size-v1"
        manifest = CheckpointManifest(description="random weights, full-size T3 (Llama_520M)")
    else:
        path = CACHE / "bench-tiny-v1"
        manifest = CheckpointManifest(llama=dict(TINY_LLAMA), perceiver_dim=TINY_LLAMA["hidden_size"],
                                      description="random weights, tiny T3 without stop shaping")
    if (path / ".complete").exists():
        return path
    print(f"writing a random T3 to {path}", file=sys.stderr)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    t3 = build_t3(manifest)
    save_file({k: v.detach().clone().contiguous() for k, v in t3.state_dict().items()}, str(path / "t3_cfg.safetensors"))
    for name in ("ve.safetensors", "s3gen.safetensors", "tokenizer.json"):
        link = path / name
        if not link.exists():
            link.symlink_to((base / name).resolve())
    manifest.write(path)
    (path / ".complete").write_text("ok\n")
    return path


# --- helpers -------------------------------------------------------------------------------


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextlib.contextmanager
def stop_token_off(t3) -> Iterator[None]:
    """Every generation runs to its budget: upstream's loop and ours both read the stop
    token from the config, and -1 is never sampled."""
    old = t3.hp.stop_speech_token
    t3.hp.stop_speech_token = -1
    try:
        yield
    finally:
        t3.hp.stop_speech_token = old


def float32_t3(engine: ChatterboxEngine) -> torch.nn.Module:
    """The T3 upstream's side runs: float32, as upstream ships it. With our side in bfloat16
    (`--t3-dtype`) a float32 copy (the bf16 weights widened, which changes nothing of the speed
    of a random-weight model; its settings, the stop token's included, as they are now)."""
    t3 = engine.model.t3
    return t3 if t3.speech_head.weight.dtype == torch.float32 else copy.deepcopy(t3).float()


@contextlib.contextmanager
def t3_standing_in(engine: ChatterboxEngine, t3: torch.nn.Module) -> Iterator[None]:
    """`t3` in the engine's model while the block runs (upstream's calls read `model.t3`)."""
    own = engine.model.t3
    engine.model.t3 = t3
    try:
        yield
    finally:
        engine.model.t3 = own


def voice_clip(seconds: float, seed: int) -> Clip:
    """A voice-like harmonic tone (the reference encoders need structure, not speech)."""
    sr = 24_000
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = (110 + 30 * seed) * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wave = sum((0.5 / k) * np.sin(k * phase) for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    return Clip((0.3 * wave * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32), sr)


def make_jobs(voices: list, n: int, offset: int = 0, model: str = "chatterbox") -> list[SynthesisRequest]:
    """Jobs with each model's upstream default settings (as the worker applies them)."""
    defaults = dict(MODELS[model].defaults)
    out = []
    for i in range(offset, offset + n):
        voice = voices[i % len(voices)]
        if model == MULTILINGUAL:
            out.append(SynthesisRequest(f"job{i}", voice, MTL_TEXTS[i % len(MTL_TEXTS)],
                                        GenerationParams(seed=i, **defaults), LANGUAGES[i % len(LANGUAGES)]))
        elif model == TURBO:
            out.append(SynthesisRequest(f"job{i}", voice, TEXTS[i % len(TEXTS)],
                                        GenerationParams(seed=i, cfg_weight=0.0, exaggeration=0.0, **defaults)))
        else:
            out.append(SynthesisRequest(f"job{i}", voice, TEXTS[i % len(TEXTS)], GenerationParams(seed=i)))
    return out


@dataclass
class Row:
    name: str
    batch: int
    jobs: int
    t3_tok_s: float
    s3gen_audio_s_s: float | None  # None: not measured
    jobs_s: float
    audio_s_s: float
    estimated: bool = False


# --- the two sides ---------------------------------------------------------------------------


@torch.inference_mode()
def upstream_turbo_job(engine: ChatterboxEngine, req: SynthesisRequest, tokens: int, with_s3gen: bool
                       ) -> tuple[float, float, int, float]:
    """One job as `ChatterboxTurboTTS.generate` runs it. (t3 s, s3gen+watermark s, tokens, audio s)"""
    from chatterbox.models.s3gen.const import S3GEN_SIL
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    from chatterbox.tts_turbo import punc_norm

    model, device = engine.model, engine.info.device
    p = req.params
    torch.manual_seed(p.seed or 0)
    t0 = time.perf_counter()
    cond = T3Cond(speaker_emb=req.voice.t3.speaker_emb, cond_prompt_speech_tokens=req.voice.t3.cond_prompt_speech_tokens,
                  emotion_adv=p.exaggeration * torch.ones(1, 1, 1)).to(device=device)
    text = model.tokenizer(punc_norm(req.text), return_tensors="pt", padding=True, truncation=True).input_ids.to(device)
    speech = model.t3.inference_turbo(t3_cond=cond, text_tokens=text, temperature=p.temperature, top_k=p.top_k,
                                      top_p=p.top_p, repetition_penalty=p.repetition_penalty,
                                      max_gen_len=tokens - 1)[0]
    n = int(speech.numel())
    sync(device)
    t1 = time.perf_counter()
    if not with_s3gen:
        return t1 - t0, 0.0, n, 0.0
    speech = speech[speech < 6561].to(device)
    speech = torch.cat([speech, torch.tensor([S3GEN_SIL] * 3, device=device)])
    wav, _ = model.s3gen.inference(speech_tokens=speech, ref_dict=req.voice.gen, n_cfm_timesteps=2)
    wav = wav.squeeze(0).detach().cpu().numpy()
    model.watermarker.apply_watermark(wav, sample_rate=model.sr)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, n, len(wav) / model.sr


@contextlib.contextmanager
def no_alignment_analyzer() -> Iterator[None]:
    """Upstream's multilingual loop hooks layer 9's attentions; the 2-layer benchmark T3 has
    no layer 9. Switching the analyzer off only saves upstream time."""
    import chatterbox.models.t3.t3 as t3_module

    class PassThrough:
        """Stands where the analyzer would: keeps its stop id, leaves the logits alone."""

        def __init__(self, *args: object, eos_idx: int, **kwargs: object) -> None:
            self.eos_idx = eos_idx

        def step(self, logits: torch.Tensor, next_token: object = None) -> torch.Tensor:
            return logits

    old = t3_module.AlignmentStreamAnalyzer
    t3_module.AlignmentStreamAnalyzer = PassThrough  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        t3_module.AlignmentStreamAnalyzer = old  # type: ignore[misc]


@torch.inference_mode()
def upstream_job(engine: ChatterboxEngine, req: SynthesisRequest, tokens: int, with_s3gen: bool
                 ) -> tuple[float, float, int, float]:
    """One job as its model's upstream `generate` runs it. (t3 s, s3gen+watermark s, tokens, audio s)"""
    if engine.model_name == TURBO:
        return upstream_turbo_job(engine, req, tokens, with_s3gen)
    import torch.nn.functional as F
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    from chatterbox.tts import punc_norm

    model, device = engine.model, engine.info.device
    p = req.params
    torch.manual_seed(p.seed or 0)
    t0 = time.perf_counter()
    cond = T3Cond(speaker_emb=req.voice.t3.speaker_emb, cond_prompt_speech_tokens=req.voice.t3.cond_prompt_speech_tokens,
                  emotion_adv=p.exaggeration * torch.ones(1, 1, 1)).to(device=device)
    if engine.model_name == MULTILINGUAL:
        from chatterbox.mtl_tts import punc_norm as mtl_punc_norm

        text = model.tokenizer.text_to_tokens(mtl_punc_norm(req.text), language_id=req.language).to(device)
    else:
        text = model.tokenizer.text_to_tokens(punc_norm(req.text)).to(device)
    text = torch.cat([text, text], dim=0)
    text = F.pad(F.pad(text, (1, 0), value=model.t3.hp.start_text_token), (0, 1), value=model.t3.hp.stop_text_token)
    speech = model.t3.inference(t3_cond=cond, text_tokens=text, max_new_tokens=tokens, temperature=p.temperature,
                                cfg_weight=p.cfg_weight, repetition_penalty=p.repetition_penalty, min_p=p.min_p,
                                top_p=p.top_p)[0]
    n = int(speech.numel())
    sync(device)
    t1 = time.perf_counter()
    if not with_s3gen:
        return t1 - t0, 0.0, n, 0.0
    # generate() calls drop_invalid_tokens first, which asserts on the several start/stop
    # tokens a run past the stop can hold; with no stop the plain filter is what it amounts to.
    speech = speech[speech < 6561].to(device)
    wav, _ = model.s3gen.inference(speech_tokens=speech, ref_dict=req.voice.gen)
    wav = wav.squeeze(0).detach().cpu().numpy()
    model.watermarker.apply_watermark(wav, sample_rate=model.sr)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, n, len(wav) / model.sr


def measure_upstream(engine: ChatterboxEngine, voices: list, jobs: int, tokens: int, with_s3gen: bool,
                     repeats: int) -> Row:
    """Each job's T3 timed `repeats` times (the best counts), its S3Gen once."""
    t3_s = s3_s = audio = 0.0
    n_tok = 0
    for req in make_jobs(voices, jobs, model=engine.model_name):
        best = min(upstream_job(engine, req, tokens, False)[0] for _ in range(max(0, repeats - 1))) \
            if repeats > 1 else float("inf")
        a, b, n, sec = upstream_job(engine, req, tokens, with_s3gen)
        t3_s, s3_s, n_tok, audio = t3_s + min(a, best), s3_s + b, n_tok + n, audio + sec
    total = t3_s + s3_s
    return Row("upstream", 1, jobs, n_tok / t3_s, audio / s3_s if with_s3gen else None,
               jobs / total, audio / total if with_s3gen else 0.0, estimated=not with_s3gen)


def measure_batched_t3(engine: ChatterboxEngine, voices: list, batch: int, repeats: int) -> tuple[float, int]:
    """The batched T3 stage as the engine runs it (plans, then one decode loop); best of
    `repeats`. (seconds, speech tokens)"""
    best, n_tok = float("inf"), 0
    for _ in range(repeats):
        sync(engine.info.device)
        t0 = time.perf_counter()
        rows = [r for i, req in enumerate(make_jobs(voices, batch, model=engine.model_name))
                for r in engine.plan(i, req).rows]
        outs = generate(engine.model.t3, rows)
        sync(engine.info.device)
        best = min(best, time.perf_counter() - t0)
        n_tok = sum(int(o.tokens.numel()) for o in outs)
    return best, n_tok


def measure_batched(engine: ChatterboxEngine, voices: list, batch: int, repeats: int, with_s3gen: bool
                    ) -> tuple[Row, float, float]:
    """T3 best of `repeats`; with S3Gen, one full `synthesize` of the batch for the rest
    (S3Gen, joining, the watermark). Returns the row, the seconds per job beyond T3 and the
    audio seconds per job (0 without S3Gen)."""
    t3_s, n_tok = measure_batched_t3(engine, voices, batch, repeats)
    if not with_s3gen:
        return Row("batched", batch, batch, n_tok / t3_s, None, batch / t3_s, 0.0, estimated=True), 0.0, 0.0
    outs = engine.synthesize(make_jobs(voices, batch, model=engine.model_name))
    failures = [o for o in outs if isinstance(o, BaseException)]
    if failures:
        raise RuntimeError(f"batched synthesis failed: {failures[0]!r}")
    st = engine.last_stats
    assert st is not None
    rest = st.total_seconds - st.t3_seconds
    total = min(t3_s, st.t3_seconds) + rest
    row = Row("batched", batch, batch, n_tok / min(t3_s, st.t3_seconds), st.audio_seconds / st.s3gen_seconds,
              batch / total, st.audio_seconds / total)
    return row, rest / batch, st.audio_seconds / batch


# --- the mixed-length workload ----------------------------------------------------------------


@dataclass
class MixedResult:
    name: str
    jobs: int
    seconds: float
    mean_latency_s: float
    steps: int

    @property
    def jobs_s(self) -> float:
        return self.jobs / self.seconds


def mixed_workload(engine: ChatterboxEngine, voices: list, jobs: int, seed: int = 0) -> list[tuple[float, T3Row]]:
    """(arrival offset in s, T3 row) per job: 20-400 speech tokens each; offsets are filled in
    by `with_arrivals` once the decoder's speed is known."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, req in enumerate(make_jobs(voices, jobs, model=engine.model_name)):
        row = engine.plan(i, req).rows[0]
        budget = int(rng.integers(20, 401))
        rows.append((0.0, T3Row(row.cond, row.text_tokens, row.sampling, budget, row.seed)))
    return rows


def with_arrivals(rows: list[tuple[float, T3Row]], per_job_s: float, seed: int = 1) -> list[tuple[float, T3Row]]:
    """Poisson arrivals at twice the rate the decoder can serve (per_job_s: its mean time per
    job when full), so a queue builds up and stays."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(per_job_s / 2.0, size=len(rows))
    gaps[0] = 0.0
    return [(float(t), r) for t, (_, r) in zip(np.cumsum(gaps), rows)]


def time_decode_step(engine: ChatterboxEngine, rows: list[tuple[float, T3Row]], slots: int, steps: int = 30
                     ) -> float:
    """Seconds per decode step with every slot busy (admission excluded)."""
    device = engine.info.device
    dec = SlotDecoder(engine.model.t3, slots, 1024, ignore_stop=True, max_new_tokens=400)
    batch, room = [], slots
    for i, (_, r) in enumerate(rows):
        if SlotDecoder.slots_for(r) > room:
            break
        room -= SlotDecoder.slots_for(r)
        batch.append((i, T3Row(r.cond, r.text_tokens, r.sampling, 400, r.seed)))
    dec.admit(batch)
    for _ in range(5):
        dec.advance()
    times = []
    for _ in range(steps):  # the median step: a shared machine's noise must not set the arrival rate
        sync(device)
        t0 = time.perf_counter()
        dec.advance()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_static(engine: ChatterboxEngine, rows: list[tuple[float, T3Row]], slots: int) -> MixedResult:
    """Today's batches: whatever has arrived (up to `slots` model rows) decodes to its longest job."""
    device = engine.info.device
    start = time.perf_counter()
    pending = list(range(len(rows)))
    latency, steps = 0.0, 0
    while pending:
        now = time.perf_counter() - start
        if rows[pending[0]][0] > now:
            time.sleep(rows[pending[0]][0] - now)
            now = rows[pending[0]][0]
        batch, room = [], slots
        while pending and rows[pending[0]][0] <= now and SlotDecoder.slots_for(rows[pending[0]][1]) <= room:
            i = pending.pop(0)
            room -= SlotDecoder.slots_for(rows[i][1])
            batch.append(i)
        generate(engine.model.t3, [rows[i][1] for i in batch], ignore_stop=True)
        sync(device)
        end = time.perf_counter() - start
        steps += max(rows[i][1].max_new_tokens for i in batch)
        latency += sum(end - rows[i][0] for i in batch)
    total = time.perf_counter() - start
    return MixedResult("static", len(rows), total, latency / len(rows), steps)


def run_continuous(engine: ChatterboxEngine, rows: list[tuple[float, T3Row]], slots: int) -> MixedResult:
    """One decoder: arrived jobs take free slots as others finish."""
    device = engine.info.device
    dec = SlotDecoder(engine.model.t3, slots, 1024, ignore_stop=True, max_new_tokens=400)
    start = time.perf_counter()
    pending = list(range(len(rows)))
    latency, done = 0.0, 0
    with torch.inference_mode():
        while pending or dec.active:
            now = time.perf_counter() - start
            if not dec.active and rows[pending[0]][0] > now:
                time.sleep(rows[pending[0]][0] - now)
                now = rows[pending[0]][0]
            batch, room = [], dec.free_slots
            while pending and rows[pending[0]][0] <= now and SlotDecoder.slots_for(rows[pending[0]][1]) <= room:
                i = pending.pop(0)
                room -= SlotDecoder.slots_for(rows[i][1])
                batch.append((i, rows[i][1]))
            if batch:
                dec.admit(batch)
            finished = dec.advance()
            if finished:
                end = time.perf_counter() - start
                latency += sum(end - rows[i][0] for i, _ in finished)  # type: ignore[misc]
                done += len(finished)
    sync(device)
    total = time.perf_counter() - start
    return MixedResult("continuous", len(rows), total, latency / len(rows), dec.steps_run)


def t3_weight_bytes(engine: ChatterboxEngine) -> int:
    """Bytes of the weights one decode step reads: the backbone and the speech head/embeddings."""
    t3 = engine.model.t3
    mods = [t3.tfmr, t3.speech_head, t3.speech_emb]
    return sum(p.numel() * p.element_size() for m in mods for p in m.parameters())


def run_mixed(engine: ChatterboxEngine, voices: list, args: argparse.Namespace) -> float:
    """The mixed-length workload, static against continuous; prints both and returns the ratio."""
    slots = args.mixed_slots
    base = mixed_workload(engine, voices, args.mixed_jobs)
    with stop_token_off(engine.model.t3):
        step_s = time_decode_step(engine, base, slots)
        mean_tokens = float(np.mean([r.max_new_tokens for _, r in base]))
        per_job = step_s * mean_tokens / max(1, slots // 2)  # guided rows take two slots
        rows = with_arrivals(base, per_job)
        run_continuous(engine, rows[: max(2, len(rows) // 8)], slots)  # warm-up (allocator, kernels)
        static = run_static(engine, rows, slots)
        cont = run_continuous(engine, rows, slots)
    bytes_ = t3_weight_bytes(engine)
    gbs = bytes_ / step_s / 1e9
    bw = f" ({100 * gbs / args.peak_gbs:.1f}% of {args.peak_gbs:g} GB/s)" if args.peak_gbs else ""
    print(f"mixed workload: {args.mixed_jobs} jobs of 20-400 speech tokens (mean {mean_tokens:.0f}), "
          f"arriving over {rows[-1][0]:.2f} s, {slots} slots, stop token off")
    print(f"  T3 decode step, {slots} slots busy: {1e3 * step_s:.2f} ms; weights {bytes_ / 1e6:.1f} MB "
          f"-> {gbs:.1f} GB/s{bw}")
    for r in (static, cont):
        print(f"  {r.name:<10} T3 jobs/s={r.jobs_s:.2f} seconds={r.seconds:.2f} steps={r.steps} "
              f"mean_latency_s={r.mean_latency_s:.2f}")
    ratio = cont.jobs_s / static.jobs_s
    print(f"{engine.model_name}: continuous_vs_static={ratio:.2f}")
    if args.mixed_e2e:
        first, total, n = mixed_e2e(engine, voices, rows)
        print(f"  engine session (T3 + S3Gen on the vocoder thread): {n} jobs in {total:.2f} s, "
              f"{n / total:.2f} jobs/s, time to first audio {first:.2f} s")
    return ratio


def mixed_e2e(engine: ChatterboxEngine, voices: list, rows: list[tuple[float, T3Row]]) -> tuple[float, float, int]:
    """The whole engine session over the workload's arrivals: (first audio s, total s, jobs)."""
    reqs = make_jobs(voices, len(rows), model=engine.model_name)
    reqs = [SynthesisRequest(r.key, r.voice, r.text, GenerationParams(**{**r.params.__dict__,
                                                                         "max_speech_tokens": row.max_new_tokens}),
                             r.language) for r, (_, row) in zip(reqs, rows)]
    start = time.perf_counter()
    pending = list(range(len(reqs)))
    outcomes: dict[str, object] = {}

    def feed(room: int, idle: bool) -> list[SynthesisRequest]:
        now = time.perf_counter() - start
        if idle and pending and rows[pending[0]][0] > now:
            time.sleep(rows[pending[0]][0] - now)
            now = rows[pending[0]][0]
        out = []
        while pending and rows[pending[0]][0] <= now and len(out) < max(1, room):
            out.append(reqs[pending.pop(0)])
        return out

    cap = engine.max_speech_tokens
    engine.max_speech_tokens = max(cap, 400)  # the workload's jobs go up to 400 tokens
    try:
        with stop_token_off(engine.model.t3):
            stats = engine.run_session(feed, outcomes.__setitem__, slots=engine.t3_rows_per_pass, ignore_stop=True)
    finally:
        engine.max_speech_tokens = cap
    failures = [o for o in outcomes.values() if isinstance(o, BaseException)]
    if failures:
        raise RuntimeError(f"session failed: {failures[0]!r}")
    return stats.first_audio_s or float("nan"), stats.total_seconds, len(outcomes)


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="chatterbox",
                    help="comma-separated models to measure (chatterbox, chatterbox-turbo, chatterbox-multilingual)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--ckpt", type=Path, default=None,
                    help="checkpoint folder (default: the tiny test checkpoint's files with a plain random T3)")
    ap.add_argument("--full-size", action="store_true", help="a random full-size T3 (Llama_520M) instead of the tiny one")
    ap.add_argument("--tokens", type=int, default=100, help="speech tokens per job (fixed budget)")
    ap.add_argument("--batch-sizes", default="1,4,8,16,32")
    ap.add_argument("--upstream-jobs", type=int, default=None, help="upstream jobs to time (default cpu 4, cuda 8)")
    ap.add_argument("--s3gen-max-batch", type=int, default=None,
                    help="run S3Gen only for batches up to this size (default cpu 4, cuda: all)")
    ap.add_argument("--no-s3gen", action="store_true", help="time T3 only")
    ap.add_argument("--repeats", type=int, default=3,
                    help="T3 runs per measurement, the best counts (both sides; S3Gen runs once)")
    ap.add_argument("--s3gen-batched", choices=["auto", "yes", "no"], default="auto",
                    help="S3Gen flow batched or per job (default: the engine's choice for the device)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    ap.add_argument("--mixed-jobs", type=int, default=48, help="jobs of the mixed-length workload (0: skip it)")
    ap.add_argument("--mixed-slots", type=int, default=8, help="decoder slots (model rows) for the mixed workload")
    ap.add_argument("--mixed-e2e", action=argparse.BooleanOptionalAction, default=None,
                    help="also run the whole engine session over the mixed workload (default: on CUDA)")
    ap.add_argument("--peak-gbs", type=float, default=None,
                    help="the device's memory bandwidth in GB/s (e.g. 4800 for an H200), for the decode step's bound")
    ap.add_argument("--skip-fixed", action="store_true", help="only the mixed workload (no upstream table)")
    ap.add_argument("--t3-dtype", default="float32", choices=["float32", "bfloat16"],
                    help="T3's weights on our side, as VOICEQ_T3_DTYPE loads them (a CPU keeps float32); "
                         "upstream always runs float32, as it ships")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA (or ROCm) device here; run it on a GPU machine")
    if args.mixed_e2e is None:
        args.mixed_e2e = args.device == "cuda"

    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    on_cpu = args.device == "cpu"
    sizes = [int(x) for x in args.batch_sizes.split(",")]
    upstream_jobs = args.upstream_jobs or (4 if on_cpu else 8)
    s3_max = 0 if args.no_s3gen else (args.s3gen_max_batch if args.s3gen_max_batch is not None else
                                      (4 if on_cpu else max(sizes)))

    models = [m.strip() for m in args.model.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}: choose among {', '.join(MODELS)}")
    ratios: dict[str, tuple[float, float, float | None]] = {}
    for model in models:
        ratios[model] = run_model(model, args, sizes, upstream_jobs, s3_max, on_cpu)
    first = ratios[models[0]]
    parts = []
    if not args.skip_fixed:
        parts.append(f"t3_batch16_vs_upstream={first[0]:.2f} e2e_batch16_vs_upstream={first[1]:.2f}")
        if TURBO in ratios:
            parts.append(f"turbo_t3_batch16_vs_upstream={ratios[TURBO][0]:.2f}")
        if MULTILINGUAL in ratios:
            parts.append(f"multilingual_t3_batch16_vs_upstream={ratios[MULTILINGUAL][0]:.2f}")
    if first[2] is not None:
        parts.append(f"continuous_vs_static={first[2]:.2f}")
    print(" ".join(parts))
    return 0


def run_model(model: str, args: argparse.Namespace, sizes: list[int], upstream_jobs: int, s3_max: int,
              on_cpu: bool) -> tuple[float, float, float | None]:
    """Measure one model and print its table; (T3, end-to-end) ratios at batch 16, and the
    mixed workload's continuous over static ratio (None when skipped)."""
    if args.ckpt is not None:
        ckpt = args.ckpt
    elif model == TURBO:
        ckpt = turbo_bench_checkpoint()
    elif model == MULTILINGUAL:
        ckpt = multilingual_bench_checkpoint(tiny_checkpoint())
    else:
        ckpt = bench_checkpoint(tiny_checkpoint(), full_size=args.full_size)
    engine = engine_class(model).load(ckpt, device=args.device, max_speech_tokens=args.tokens, t3_dtype=args.t3_dtype)
    engine.max_speech_tokens = args.tokens  # the manifest's test cap must not shorten the budget
    if args.s3gen_batched != "auto":
        engine.s3gen_batched = args.s3gen_batched == "yes"
    # Turbo refuses references of 5 s or less (as upstream does).
    lengths = [5.5, 6.0, 7.0] if model == TURBO else [3.0, 2.5, 4.0]
    voices = [engine.prepare_voice(voice_clip(s, i)) for i, s in enumerate(lengths)]
    t3_dtype = str(engine.model.t3.speech_head.weight.dtype).removeprefix("torch.")
    print(f"model={model} device={args.device} ckpt={ckpt} t3={'full-size' if args.full_size else 'as in checkpoint'} "
          f"t3_dtype={t3_dtype} tokens/job={args.tokens} s3gen_batched={engine.s3gen_batched} "
          f"threads={torch.get_num_threads()}")

    mixed = run_mixed(engine, voices, args) if args.mixed_jobs > 0 else None
    if args.skip_fixed:
        return float("nan"), float("nan"), mixed
    rows: list[Row] = []
    guard = no_alignment_analyzer() if model == MULTILINGUAL else contextlib.nullcontext()
    with stop_token_off(engine.model.t3), guard:
        upstream_t3 = float32_t3(engine)  # made once, with the stop token off
        # Warm-up: the first S3Gen and T3 calls in a process pay one-time costs.
        with t3_standing_in(engine, upstream_t3):
            upstream_job(engine, make_jobs(voices, 1, model=model)[0], min(args.tokens, 20), s3_max > 0)
        if s3_max > 0:
            engine.synthesize(make_jobs(voices, 1, model=model))
        measure_batched_t3(engine, voices, 2, 1)

        with t3_standing_in(engine, upstream_t3):
            up = measure_upstream(engine, voices, upstream_jobs, args.tokens, s3_max > 0, args.repeats)
        rows.append(up)
        print(f"  upstream: {upstream_jobs} jobs measured", file=sys.stderr)
        per_job_rest: float | None = None  # measured end-to-end seconds per job beyond T3
        audio_per_job = 0.0
        for b in sizes:
            if b <= s3_max:
                row, per_job_rest, audio_per_job = measure_batched(engine, voices, b, args.repeats, True)
            else:
                row, _, _ = measure_batched(engine, voices, b, args.repeats, False)
                if per_job_rest is not None:
                    t3_s = b / row.jobs_s
                    total = t3_s + per_job_rest * b
                    row.jobs_s, row.audio_s_s = b / total, audio_per_job * b / total
            rows.append(row)
            print(f"  batch {b}: done", file=sys.stderr)

    def fmt(x: float | None, est: bool = False) -> str:
        if x is None:
            return "-"
        return f"{x:,.2f}" + ("*" if est else "")

    header = f"{'path':<9} {'batch':>5} {'T3 tok/s':>12} {'S3Gen aud-s/s':>14} {'jobs/s':>9} {'aud-s/s':>9} " \
             f"{'T3 x':>7} {'e2e x':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        t3x = r.t3_tok_s / up.t3_tok_s
        e2ex = r.jobs_s / up.jobs_s
        print(f"{r.name:<9} {r.batch:>5} {fmt(r.t3_tok_s):>12} {fmt(r.s3gen_audio_s_s):>14} "
              f"{fmt(r.jobs_s, r.estimated):>9} {fmt(r.audio_s_s, r.estimated):>9} {t3x:>6.2f}x {e2ex:>6.2f}x")
    if any(r.estimated for r in rows):
        print("* estimated: T3 measured, S3Gen + watermark at the per-job cost measured at the largest "
              f"batch that ran S3Gen (batches <= {s3_max})" if s3_max else "* T3 only (S3Gen not run)")
    if args.json:
        path = args.json if len(args.model.split(",")) == 1 else args.json.with_name(f"{args.json.stem}-{model}.json")
        path.write_text(json.dumps([r.__dict__ for r in rows], indent=2) + "\n")
    b16 = next((r for r in rows if r.name == "batched" and r.batch == 16), None)
    t3_ratio = b16.t3_tok_s / up.t3_tok_s if b16 else float("nan")
    e2e_ratio = b16.jobs_s / up.jobs_s if b16 else float("nan")
    print(f"{model}: t3_batch16_vs_upstream={t3_ratio:.2f} e2e_batch16_vs_upstream={e2e_ratio:.2f}")
    return t3_ratio, e2e_ratio, mixed


if __name__ == "__main__":
    raise SystemExit(main())
