"""The real engine: Resemble AI's Chatterbox (T3 text-to-speech-tokens, S3Gen tokens-to-audio).

A voice is Chatterbox's `Conditionals` (S3Gen reference embedding and T3 conditioning),
prepared once from the upload and stored, so later jobs in that voice skip the reference
encoders. Synthesis does what `ChatterboxTTS.generate` does (T3 for the text, special tokens
dropped, S3Gen, the Perth watermark) for a whole batch at once: long texts are split into
chunks (`text.py`), every chunk of every job is a row of one batched T3 decode loop
(`t3_decode.py`), and S3Gen runs the rows batched or job by job (`s3gen_batch.py`). Each T3
generation is capped at `cap_for(params)` speech tokens.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch

from ..pcm import Clip, to_wav
from ..models import CHATTERBOX
from .budget import chunk_budgets
from .base import ConversionRequest, EngineInfo, GenerationParams, Synthesis, SynthesisRequest
from .loading import load_model, pick_device
from .isolation import isolated as _isolated
from .plan import JobPlan
from .precision import apply_t3_dtype, t3_dtype_for
from .s3gen_batch import S3GenJob
from .session import Emit, Feed, SessionStats, run_session
from .s3gen_batch import synthesize as s3gen_synthesize
from .t3_decode import SamplingParams, T3Row, generate, stack_for
from .text import DEFAULT_MAX_CHARS, join_audio, speech_token_estimate, split_text

log = logging.getLogger("voiceq.engine")


class ChatterboxEngine:
    """The English model; `family.py` holds Turbo and Multilingual, which differ in a few
    hooks (text tokens and framing, sampling, voice preparation, S3Gen's input)."""

    model_name = CHATTERBOX

    def __init__(self, model, *, device: str, gpu_type: str, max_speech_tokens: int, description: str = "") -> None:
        self.model = model
        self.sample_rate: int = model.sr
        self.max_speech_tokens = max_speech_tokens
        on_gpu = torch.device(device).type != "cpu"
        # Chunks of at most this many characters (about 20 s of speech each).
        self.max_chunk_chars = DEFAULT_MAX_CHARS
        # T3 cache bytes per sequence and token: a batch of R model rows decoding up to N
        # tokens after a prefix of P holds R * (P + N) of these.
        self.kv_bytes_per_token = stack_for(model.t3).kv_bytes_per_token()
        # A CPU's cache is bounded to 2 GiB (64 rows of the tiny test model; a few of the real one).
        self.t3_rows_per_pass = self._default_t3_rows(device) if on_gpu else \
            int(max(2, min(64, 2**31 // (self.t3_columns * self.kv_bytes_per_token))))
        # S3Gen's flow batched: on a CPU it measured no faster than job by job (the
        # estimator is compute-bound there, and padding costs), on a GPU one job leaves it idle.
        self.s3gen_batched = on_gpu
        self.s3gen_rows_per_pass = 16
        self.last_stats: BatchStats | None = None
        self._prepare_turn = threading.Lock()
        self.info = EngineInfo(
            name=self.model_name,
            device=device,
            gpu_type=gpu_type,
            description=description,
            max_speech_tokens=max_speech_tokens,
        )

    @classmethod
    def load(cls, ckpt_dir: Path | None, *, device: str = "auto", max_speech_tokens: int = 1000,
             t3_dtype: str = "float32") -> ChatterboxEngine:
        torch_device, gpu_type = pick_device(device)
        t3_dtype_for(t3_dtype, torch_device)  # an unknown setting fails before the weights load
        model, manifest = load_model(cls.model_name, ckpt_dir, torch_device)
        apply_t3_dtype(model.t3, t3_dtype, torch_device)
        cap = max_speech_tokens
        if manifest.max_speech_tokens is not None:
            cap = min(cap, manifest.max_speech_tokens)
        return cls(model, device=torch_device, gpu_type=gpu_type, max_speech_tokens=cap,
                   description=manifest.description)

    @property
    def t3_columns(self) -> int:
        """KV cache columns a decode slot is sized for: a prefix of up to ~400 columns plus
        the token cap (a longer prefix grows the cache when it is admitted)."""
        return 400 + self.max_speech_tokens

    def _default_t3_rows(self, device: str) -> int:
        """Model rows per T3 pass that keep the KV cache within a third of the GPU's memory
        (a prefix of up to ~400 columns plus the token cap)."""
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        per_row = self.t3_columns * self.kv_bytes_per_token
        return int(max(2, min(256, total // 3 // per_row)))

    # --- voices -------------------------------------------------------------------------

    def prepare_voice(self, clip: Clip):
        # Upstream's own preparation path reads a file; hand it one so the voice is prepared
        # exactly as this model's upstream class would prepare it.
        # Called from preparation threads while other jobs decode: upstream keeps the result on
        # the model object (`conds`), so preparations take turns.
        fd, path = tempfile.mkstemp(suffix=".wav")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(to_wav(clip))
            with self._prepare_turn, torch.inference_mode():
                self.model.prepare_conditionals(path)
                conds = self.model.conds
        finally:
            os.unlink(path)
        return conds

    def voice_to_bytes(self, voice) -> bytes:
        buf = io.BytesIO()
        torch.save({"t3": voice.t3.__dict__, "gen": voice.gen}, buf)
        return buf.getvalue()

    def voice_from_bytes(self, data: bytes):
        from chatterbox.models.t3.modules.cond_enc import T3Cond
        from chatterbox.tts import Conditionals

        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return Conditionals(T3Cond(**state["t3"]), state["gen"]).to(self.info.device)

    # --- synthesis ----------------------------------------------------------------------

    def cap_for(self, params: GenerationParams) -> int:
        if params.max_speech_tokens is None:
            return self.max_speech_tokens
        return max(1, min(params.max_speech_tokens, self.max_speech_tokens))

    def synthesize(self, requests: Sequence[SynthesisRequest]) -> list[Synthesis | BaseException]:
        """Speak every request, all of them through one batched T3 loop and S3Gen.

        A request that cannot be planned (bad settings, nothing to say) fails before the
        batch; a stage that fails for a batch is retried job by job, so only the job that
        breaks it fails."""
        outcomes: list[Synthesis | BaseException | None] = [None] * len(requests)
        plans: list[JobPlan] = []
        for i, req in enumerate(requests):
            try:
                plans.append(self.plan(i, req))
            except Exception as err:
                log.warning("cannot synthesize %s: %s", req.key, err)
                outcomes[i] = err

        started = time.perf_counter()
        with torch.inference_mode():
            tokens = _isolated(self._run_t3, plans)
            t3_done = time.perf_counter()
            ready: list[tuple[JobPlan, list[torch.Tensor]]] = []
            for plan, got in zip(plans, tokens):
                if isinstance(got, BaseException):
                    log.error("T3 failed for %s: %r", requests[plan.index].key, got)
                    outcomes[plan.index] = got
                elif not any(t.numel() for t in got):
                    outcomes[plan.index] = RuntimeError("the model produced no speech tokens")
                else:
                    ready.append((plan, got))
            waves = _isolated(self._run_s3gen, ready)
            s3gen_done = time.perf_counter()
        for (plan, got), wav in zip(ready, waves):
            if isinstance(wav, BaseException):
                log.error("S3Gen failed for %s: %r", requests[plan.index].key, wav)
                outcomes[plan.index] = wav
                continue
            try:
                outcomes[plan.index] = self._finish(wav, sum(int(t.numel()) for t in got))
            except Exception as err:
                log.exception("could not finish %s", requests[plan.index].key)
                outcomes[plan.index] = err
        finished = time.perf_counter()
        done = [o for o in outcomes if isinstance(o, Synthesis)]
        self.last_stats = BatchStats(
            jobs=len(requests),
            failed=len(requests) - len(done),
            t3_rows=sum(len(p.rows) for p in plans),
            speech_tokens=sum(o.speech_tokens for o in done),
            audio_seconds=sum(o.seconds for o in done),
            t3_seconds=t3_done - started,
            s3gen_seconds=s3gen_done - t3_done,
            total_seconds=finished - started,
        )
        log.info("batch: %s", self.last_stats)
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    # --- batch planning -------------------------------------------------------------------

    def plan(self, index: int, req: SynthesisRequest) -> JobPlan:
        """A request's T3 rows (one per text chunk) with their settings, budgets and seeds."""
        from chatterbox.models.t3.modules.cond_enc import T3Cond

        p = req.params
        sampling = self.sampling(p)
        sampling.check()
        if not math.isfinite(p.exaggeration):
            raise ValueError(f"exaggeration must be a number, not {p.exaggeration}")
        voice = req.voice
        _check_voice(voice)
        chunks = split_text(req.text, self.max_chunk_chars)
        if not chunks:
            raise ValueError("sample_text has nothing to say")
        seed = p.seed if p.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        cond = T3Cond(
            speaker_emb=voice.t3.speaker_emb,
            cond_prompt_speech_tokens=voice.t3.cond_prompt_speech_tokens,
            emotion_adv=p.exaggeration * torch.ones(1, 1, 1),
        )
        hp = self.model.t3.hp
        rows = []
        # The cap is the job's: its chunks share it (budget.py).
        budgets = chunk_budgets(self.cap_for(p), [speech_token_estimate(c) for c in chunks])
        for k, chunk in enumerate(chunks):
            framed = self.frame(self.text_tokens(chunk, req.language)[0].cpu())  # (T,)
            if framed.numel() > hp.max_text_tokens:
                raise ValueError(f"a text chunk is too long for the model ({framed.numel()} tokens)")
            rows.append(T3Row(cond=cond, text_tokens=framed, sampling=sampling,
                              max_new_tokens=budgets[k], seed=derive_seed(seed, k, "t3")))
        s3_seeds = [derive_seed(seed, k, "s3gen") for k in range(len(chunks))]
        return JobPlan(index=index, voice=voice, rows=rows, s3gen_seeds=s3_seeds)

    def request_cost(self, req: SynthesisRequest) -> RequestCost:
        """What a request will cost a batch, for whoever forms batches: its T3 model rows
        (chunks, doubled for guidance), its speech-token ceiling and a typical count."""
        chunks = split_text(req.text, self.max_chunk_chars) or [""]
        cap = self.cap_for(req.params)
        per_row = 2 if self.sampling(req.params).cfg_weight > 0 else 1
        return RequestCost(
            chunks=len(chunks),
            model_rows=per_row * len(chunks),
            max_speech_tokens=cap,
            expected_speech_tokens=min(cap, sum(speech_token_estimate(c) for c in chunks)),
        )

    # --- stages ---------------------------------------------------------------------------

    def _run_t3(self, plans: Sequence[JobPlan]) -> list[list[torch.Tensor]]:
        """Speech tokens (valid ones only) of every chunk of every plan, in passes of at most
        `t3_rows_per_pass` model rows, rows of similar text length together."""
        from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE

        rows = [(i, k, row) for i, plan in enumerate(plans) for k, row in enumerate(plan.rows)]
        rows.sort(key=lambda r: r[2].text_tokens.numel())
        got: dict[tuple[int, int], torch.Tensor] = {}
        # One decode over at most `t3_rows_per_pass` slots: rows past it take finished rows' slots.
        outs = generate(self.model.t3, [r[2] for r in rows], slots=self.t3_rows_per_pass)
        for (i, k, _), out in zip(rows, outs):
            got[(i, k)] = out.tokens[out.tokens < SPEECH_VOCAB_SIZE]
        return [[got[(i, k)] for k in range(len(plan.rows))] for i, plan in enumerate(plans)]

    def run_session(self, feed: Feed, emit: Emit, *, slots: int | None = None,
                    ignore_stop: bool = False) -> SessionStats:
        """Continuous batching (`session.py`): requests from `feed` join the running decode as
        slots free up; each outcome goes to `emit` as soon as its audio is ready."""
        return run_session(self, feed, emit, slots=slots, ignore_stop=ignore_stop)

    def _run_s3gen(self, ready: Sequence[tuple[JobPlan, list[torch.Tensor]]]) -> list[np.ndarray]:
        """Every job's audio: its chunks through S3Gen, joined with short pauses."""
        jobs = [
            (i, k, S3GenJob(tokens=self.s3gen_tokens(t).to(self.info.device), ref=plan.voice.gen,
                            seed=plan.s3gen_seeds[k]))
            for i, (plan, toks) in enumerate(ready) for k, t in enumerate(toks) if t.numel()
        ]
        waves: dict[tuple[int, int], np.ndarray] = {}
        if self.s3gen_batched:
            jobs.sort(key=lambda j: j[2].tokens.numel() + j[2].ref["prompt_token"].numel())
            groups = _passes(jobs, self.s3gen_rows_per_pass, lambda j: 1)
        else:
            groups = [[j] for j in jobs]
        for group in groups:
            wavs = s3gen_synthesize(self.model.s3gen, [j[2] for j in group], batched=True)
            for (i, k, _), w in zip(group, wavs):
                waves[(i, k)] = w.detach().cpu().numpy()
        out = []
        for i, (plan, toks) in enumerate(ready):
            parts = [waves[(i, k)] for k, t in enumerate(toks) if t.numel()]
            out.append(join_audio(parts, self.sample_rate))
        return out

    def _finish(self, wav: np.ndarray, speech_tokens: int) -> Synthesis:
        marked = self.model.watermarker.apply_watermark(wav, sample_rate=self.sample_rate)
        return Synthesis(np.asarray(marked, dtype=np.float32), self.sample_rate, speech_tokens)

    # --- the model's hooks ------------------------------------------------------------------

    def text_tokens(self, text: str, language: str | None = None) -> torch.Tensor:
        from chatterbox.tts import punc_norm

        if language is not None:
            raise ValueError(f"{self.model_name} speaks English only; it takes no language")
        return self.model.tokenizer.text_to_tokens(punc_norm(text)).to(self.info.device)  # (1, T)

    def frame(self, tokens: torch.Tensor) -> torch.Tensor:
        """A chunk's text tokens (T,) as T3 takes them: between the start and stop tokens."""
        hp = self.model.t3.hp
        return torch.cat([torch.tensor([hp.start_text_token]), tokens, torch.tensor([hp.stop_text_token])])

    def sampling(self, p: GenerationParams) -> SamplingParams:
        return SamplingParams(temperature=p.temperature, min_p=p.min_p, top_p=p.top_p,
                              repetition_penalty=p.repetition_penalty, cfg_weight=p.cfg_weight)

    def s3gen_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """What S3Gen gets for a chunk's valid speech tokens."""
        return tokens

    # --- voice conversion -------------------------------------------------------------------

    def convert(self, requests: Sequence[ConversionRequest]) -> list[Synthesis | BaseException]:
        """`ChatterboxVC.generate` for a batch: each source clip's S3 tokens (16 kHz), then
        S3Gen with the target voice's reference, the flow batched like synthesis."""
        outcomes: list[Synthesis | BaseException | None] = [None] * len(requests)
        ready: list[tuple[int, S3GenJob]] = []
        with torch.inference_mode():
            for i, req in enumerate(requests):
                try:
                    _check_voice(req.voice)
                    tokens = self.source_tokens(req.source)
                    if not tokens.numel():
                        raise ValueError("source_audio has no speech to convert")
                    seed = req.seed if req.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
                    ready.append((i, S3GenJob(tokens=tokens, ref=req.voice.gen, seed=derive_seed(seed, 0, "s3gen"))))
                except Exception as err:
                    log.warning("cannot convert %s: %s", req.key, err)
                    outcomes[i] = err
            jobs = [j for _, j in ready]
            waves = _isolated(lambda js: s3gen_synthesize(self.model.s3gen, js, batched=self.s3gen_batched), jobs)
        for (i, job), wav in zip(ready, waves):
            if isinstance(wav, BaseException):
                outcomes[i] = wav
                continue
            try:
                outcomes[i] = self._finish(wav.detach().cpu().numpy(), int(job.tokens.numel()))
            except Exception as err:
                outcomes[i] = err
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    def source_tokens(self, clip: Clip) -> torch.Tensor:
        """S3 speech tokens (n,) of a source clip, as ChatterboxVC computes them."""
        import librosa
        from chatterbox.models.s3tokenizer import S3_SR

        audio = clip.samples.astype(np.float32)
        if clip.sample_rate != S3_SR:
            audio = librosa.resample(audio, orig_sr=clip.sample_rate, target_sr=S3_SR)
        wav = torch.from_numpy(np.ascontiguousarray(audio)).float().to(self.info.device)[None]  # (1, n)
        tokens, _ = self.model.s3gen.tokenizer(wav)
        return tokens[0].to(self.info.device)


@dataclass(frozen=True)
class BatchStats:
    """What the last `synthesize` call did and how long its stages took."""

    jobs: int
    failed: int
    t3_rows: int  # generations (text chunks) decoded
    speech_tokens: int
    audio_seconds: float
    t3_seconds: float
    s3gen_seconds: float  # the flow, the vocoder and joining chunks
    total_seconds: float  # including planning and the watermark


@dataclass(frozen=True)
class RequestCost:
    chunks: int
    model_rows: int  # T3 batch rows: one per chunk, two with guidance
    max_speech_tokens: int  # the most speech tokens it can decode (its budgets)
    expected_speech_tokens: int  # a typical count, from the text's length


def derive_seed(seed: int, *parts: object) -> int:
    """An independent 63-bit seed for one part (a chunk, a stage) of a seeded job."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _check_voice(voice: Any) -> None:
    """Refuse a voice that is not a prepared Chatterbox voice before it can break a batch."""
    t3 = getattr(voice, "t3", None)
    gen = getattr(voice, "gen", None)
    if t3 is None or not isinstance(gen, dict):
        raise TypeError("not a Chatterbox voice (expected prepared Conditionals)")
    emb = getattr(t3, "speaker_emb", None)
    if not torch.is_tensor(emb) or emb.numel() != 256:
        raise ValueError("the voice's speaker embedding is malformed")
    prompt = getattr(t3, "cond_prompt_speech_tokens", None)
    if prompt is not None and (not torch.is_tensor(prompt) or prompt.dim() != 2 or prompt.size(0) != 1):
        raise ValueError("the voice's prompt tokens are malformed")
    for key in ("prompt_token", "prompt_feat", "embedding"):
        if not torch.is_tensor(gen.get(key)):
            raise ValueError(f"the voice's S3Gen reference lacks {key}")


T = TypeVar("T")
R = TypeVar("R")


def _passes(items: list[T], limit: int, weight: Callable[[T], int]) -> list[list[T]]:
    """Consecutive groups of items whose weights add up to at most `limit` (an item heavier
    than the limit goes alone)."""
    groups: list[list[T]] = []
    current: list[T] = []
    total = 0
    for item in items:
        w = weight(item)
        if current and total + w > limit:
            groups.append(current)
            current, total = [], 0
        current.append(item)
        total += w
    if current:
        groups.append(current)
    return groups
