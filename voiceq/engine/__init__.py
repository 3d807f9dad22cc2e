"""Engines: the code that runs a TTS model. `ChatterboxEngine` is the real one."""

from .base import Engine, EngineInfo, GenerationParams, Synthesis, SynthesisRequest

__all__ = ["Engine", "EngineInfo", "GenerationParams", "Synthesis", "SynthesisRequest"]
