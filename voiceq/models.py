"""The Chatterbox family as voiceq serves it: which models exist, what each one accepts.

Pure data and checks, shared by request validation (refuse before storing anything) and the
engines (refuse before a batch). The names are the API's `model` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

CHATTERBOX = "chatterbox"
TURBO = "chatterbox-turbo"
MULTILINGUAL = "chatterbox-multilingual"
DEFAULT_MODEL = CHATTERBOX

# Job kinds: text to speech in a voice, or speech to speech (voice conversion).
KIND_CLONE = "clone"
KIND_CONVERT = "convert"

# chatterbox.mtl_tts.SUPPORTED_LANGUAGES (ISO 639-1), copied so that validating a request
# does not import the model; a test keeps the two equal.
MULTILINGUAL_LANGUAGES: dict[str, str] = {
    "ar": "Arabic", "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "it": "Italian", "ja": "Japanese",
    "ko": "Korean", "ms": "Malay", "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "pt": "Portuguese",
    "ru": "Russian", "sv": "Swedish", "sw": "Swahili", "tr": "Turkish", "zh": "Chinese",
}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    languages: frozenset[str] | None  # None: English only, no language field
    ignored: frozenset[str]  # generation settings the model has no use for
    defaults: Mapping[str, float]  # upstream generate()'s defaults where they differ from ours
    min_reference_s: float  # shortest voice reference upstream's preparation accepts
    description: str


MODELS: dict[str, ModelSpec] = {
    CHATTERBOX: ModelSpec(
        name=CHATTERBOX, languages=None, ignored=frozenset(), defaults={},
        min_reference_s=0.0, description="Chatterbox (English, 0.5 B Llama T3, guided)",
    ),
    TURBO: ModelSpec(
        name=TURBO, languages=None,
        # upstream's generate warns that it ignores these, so a request setting them is refused
        ignored=frozenset({"cfg_weight", "exaggeration", "min_p"}),
        defaults={"top_p": 0.95, "top_k": 1000, "temperature": 0.8, "repetition_penalty": 1.2},
        min_reference_s=5.0, description="Chatterbox Turbo (English, GPT-2 T3, one-step meanflow S3Gen)",
    ),
    MULTILINGUAL: ModelSpec(
        name=MULTILINGUAL, languages=frozenset(MULTILINGUAL_LANGUAGES), ignored=frozenset(),
        defaults={"repetition_penalty": 2.0},
        min_reference_s=0.0, description="Chatterbox Multilingual (23 languages)",
    ),
}


class ModelChoiceError(ValueError):
    """A model/language/settings combination no model accepts; `field` names the culprit."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def check_choice(model: str, language: str | None, params: Mapping[str, object], *,
                 served: tuple[str, ...] | None = None) -> ModelSpec:
    """The model's spec if `model` can speak `language` with these explicit settings;
    otherwise a `ModelChoiceError` naming the problem."""
    spec = MODELS.get(model)
    if spec is None:
        raise ModelChoiceError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}", "model")
    if served is not None and model not in served:
        raise ModelChoiceError(
            f"model {model!r} is not served here (this deployment serves {', '.join(served) or 'no model'})", "model")
    if spec.languages is None:
        if language is not None:
            raise ModelChoiceError(
                f"model {model!r} speaks English only and takes no language; use {MULTILINGUAL!r} for other languages",
                "language")
    elif language is None:
        raise ModelChoiceError(f"model {model!r} needs a language (ISO 639-1, e.g. 'fr')", "language")
    elif language not in spec.languages:
        raise ModelChoiceError(
            f"unsupported language {language!r} for {model!r}: choose one of {', '.join(sorted(spec.languages))}",
            "language")
    ignored = sorted(k for k in params if k in spec.ignored)
    if ignored:
        raise ModelChoiceError(f"model {model!r} does not use {', '.join(ignored)}; leave it out", ignored[0])
    return spec
