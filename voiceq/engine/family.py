"""Turbo and Multilingual: the English engine with their upstream classes' differences.

Each override mirrors what the model's upstream `generate` does differently:

- Multilingual (`ChatterboxMultilingualTTS`): its punctuation cleanup, the grapheme tokenizer
  with the job's language token, the same guided Llama T3 and S3Gen as English.
- Turbo (`ChatterboxTurboTTS`): its punctuation cleanup, a GPT-2 tokenizer whose ids go to T3
  unframed, no guidance (cfg, exaggeration and min-p are ignored upstream), top-k 1000 and
  top-p 0.95 by default, three silence tokens appended before its meanflow S3Gen, and a voice
  reference of more than 5 s (upstream asserts it).
"""

from __future__ import annotations

import torch

from ..pcm import Clip
from ..models import CHATTERBOX, MODELS, MULTILINGUAL, TURBO
from ..settings import Settings
from .base import GenerationParams
from .chatterbox import ChatterboxEngine
from .t3_decode import SamplingParams

S3GEN_SILENCE_TOKENS = 3  # ChatterboxTurboTTS.generate pads every utterance with these


class MultilingualEngine(ChatterboxEngine):
    model_name = MULTILINGUAL

    def text_tokens(self, text: str, language: str | None = None) -> torch.Tensor:
        from chatterbox.mtl_tts import punc_norm

        spec = MODELS[MULTILINGUAL]
        if language is None or spec.languages is None or language.lower() not in spec.languages:
            raise ValueError(f"{MULTILINGUAL} needs a supported language, not {language!r}")
        tokens = self.model.tokenizer.text_to_tokens(punc_norm(text), language_id=language.lower())
        return tokens.to(self.info.device)  # (1, T)


class TurboEngine(ChatterboxEngine):
    model_name = TURBO

    def text_tokens(self, text: str, language: str | None = None) -> torch.Tensor:
        from chatterbox.tts_turbo import punc_norm

        if language is not None:
            raise ValueError(f"{TURBO} speaks English only; it takes no language")
        ids = self.model.tokenizer(punc_norm(text), return_tensors="pt", padding=True, truncation=True).input_ids
        return ids.to(self.info.device)  # (1, T)

    def frame(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens  # inference_turbo takes the tokenizer's ids as they are

    def sampling(self, p: GenerationParams) -> SamplingParams:
        return SamplingParams(temperature=p.temperature, min_p=0.0, top_p=p.top_p, top_k=p.top_k,
                              repetition_penalty=p.repetition_penalty, cfg_weight=0.0)

    def s3gen_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        from chatterbox.models.s3gen.const import S3GEN_SIL

        silence = torch.full((S3GEN_SILENCE_TOKENS,), S3GEN_SIL, dtype=tokens.dtype, device=tokens.device)
        return torch.cat([tokens, silence])

    def prepare_voice(self, clip: Clip):
        minimum = MODELS[TURBO].min_reference_s
        if clip.seconds <= minimum:
            raise ValueError(f"{TURBO} needs a voice reference longer than {minimum:g} s "
                             f"(this one is {clip.seconds:.1f} s)")
        return super().prepare_voice(clip)


def engine_class(model: str) -> type[ChatterboxEngine]:
    classes: dict[str, type[ChatterboxEngine]] = {
        CHATTERBOX: ChatterboxEngine, TURBO: TurboEngine, MULTILINGUAL: MultilingualEngine,
    }
    if model not in classes:
        raise ValueError(f"unknown model {model!r}")
    return classes[model]


def load_engine(settings: Settings, model: str = CHATTERBOX) -> ChatterboxEngine:
    """The default engine factory: a family member from its checkpoint setting, or the hub."""
    return engine_class(model).load(
        settings.checkpoint_dir_for(model), device=settings.chatterbox_device,
        max_speech_tokens=settings.max_speech_tokens, t3_dtype=settings.t3_dtype,
    )
