"""The real engine: Resemble AI's Chatterbox (T3 text-to-speech-tokens, S3Gen tokens-to-audio).

A voice is Chatterbox's `Conditionals` (S3Gen reference embedding and T3 conditioning),
prepared once from the upload and stored, so later jobs in that voice skip the reference
encoders. Synthesis runs T3 for the text, drops the special tokens, runs S3Gen and the
Perth watermark, as `ChatterboxTTS.generate` does, but with a speech-token cap per job.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import Clip, to_wav
from .base import EngineInfo, GenerationParams, Synthesis, SynthesisRequest
from .loading import load_chatterbox, pick_device

log = logging.getLogger("voiceq.engine")


class ChatterboxEngine:
    def __init__(self, model, *, device: str, gpu_type: str, max_speech_tokens: int, description: str = "") -> None:
        self.model = model
        self.sample_rate: int = model.sr
        self.max_speech_tokens = max_speech_tokens
        self.info = EngineInfo(
            name="chatterbox",
            device=device,
            gpu_type=gpu_type,
            description=description,
            max_speech_tokens=max_speech_tokens,
        )

    @classmethod
    def load(cls, ckpt_dir: Path | None, *, device: str = "auto", max_speech_tokens: int = 1000) -> ChatterboxEngine:
        torch_device, gpu_type = pick_device(device)
        model, manifest = load_chatterbox(ckpt_dir, torch_device)
        cap = max_speech_tokens
        if manifest.max_speech_tokens is not None:
            cap = min(cap, manifest.max_speech_tokens)
        return cls(model, device=torch_device, gpu_type=gpu_type, max_speech_tokens=cap,
                   description=manifest.description)

    # --- voices -------------------------------------------------------------------------

    def prepare_voice(self, clip: Clip):
        from chatterbox.tts import Conditionals

        # Upstream's own preparation path reads a file; hand it one so the voice is prepared
        # exactly as ChatterboxTTS would prepare it.
        fd, path = tempfile.mkstemp(suffix=".wav")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(to_wav(clip))
            with torch.inference_mode():
                self.model.prepare_conditionals(path)
            conds: Conditionals = self.model.conds
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
        outcomes: list[Synthesis | BaseException] = []
        for req in requests:
            try:
                outcomes.append(self._synthesize_one(req))
            except Exception as err:  # one failing job must not fail its batch
                log.exception("synthesis failed for %s", req.key)
                outcomes.append(err)
        return outcomes

    def text_tokens(self, text: str) -> torch.Tensor:
        from chatterbox.tts import punc_norm

        return self.model.tokenizer.text_to_tokens(punc_norm(text)).to(self.info.device)  # (1, T)

    @torch.inference_mode()
    def _synthesize_one(self, req: SynthesisRequest) -> Synthesis:
        from chatterbox.models.s3tokenizer import drop_invalid_tokens
        from chatterbox.models.t3.modules.cond_enc import T3Cond

        p = req.params
        if p.seed is not None:
            torch.manual_seed(p.seed)
        voice = req.voice
        t3_cond = T3Cond(
            speaker_emb=voice.t3.speaker_emb,
            cond_prompt_speech_tokens=voice.t3.cond_prompt_speech_tokens,
            emotion_adv=p.exaggeration * torch.ones(1, 1, 1),
        ).to(device=self.info.device)

        t3 = self.model.t3
        tokens = self.text_tokens(req.text)
        # (2, T): the second row is CFG's unconditional one. Upstream's T3 loop always runs
        # both rows, so they are made even when cfg_weight is 0.
        tokens = torch.cat([tokens, tokens], dim=0)
        tokens = F.pad(tokens, (1, 0), value=t3.hp.start_text_token)
        tokens = F.pad(tokens, (0, 1), value=t3.hp.stop_text_token)
        speech = t3.inference(
            t3_cond=t3_cond,
            text_tokens=tokens,
            max_new_tokens=self.cap_for(p),
            temperature=p.temperature,
            cfg_weight=p.cfg_weight,
            repetition_penalty=p.repetition_penalty,
            min_p=p.min_p,
            top_p=p.top_p,
        )[0]
        speech = drop_invalid_tokens(speech)
        speech = speech[speech < 6561].to(self.info.device)
        if speech.numel() == 0:
            raise RuntimeError("the model produced no speech tokens")
        wav, _ = self.model.s3gen.inference(speech_tokens=speech, ref_dict=voice.gen)
        wav = wav.squeeze(0).detach().cpu().numpy()
        marked = self.model.watermarker.apply_watermark(wav, sample_rate=self.sample_rate)
        return Synthesis(np.asarray(marked, dtype=np.float32), self.sample_rate, int(speech.numel()))


def load_engine(settings) -> ChatterboxEngine:
    """The default engine factory: Chatterbox from CHATTERBOX_CKPT_DIR, or from the hub."""
    return ChatterboxEngine.load(
        settings.chatterbox_ckpt_dir, device=settings.chatterbox_device, max_speech_tokens=settings.max_speech_tokens
    )
