"""T3 precision: the VOICEQ_T3_DTYPE setting, the dtype it gives per device, and the batched
decode's promise in bfloat16 (a row gets the tokens it gets alone, in bfloat16), checked on
this CPU with the tiny test T3 cast by hand (the engine itself keeps a CPU in float32)."""

from __future__ import annotations

import copy

import pytest
import torch

from voiceq.engine.precision import apply_t3_dtype, t3_dtype_for
from voiceq.engine.t3_decode import SamplingParams, SlotDecoder, T3Row, generate
from voiceq.settings import Settings, SettingsError


def test_bfloat16_is_for_gpus_and_a_cpu_keeps_float32() -> None:
    assert t3_dtype_for("bfloat16", "cuda") == torch.bfloat16
    assert t3_dtype_for("bfloat16", torch.device("cuda", 1)) == torch.bfloat16
    assert t3_dtype_for("float32", "cuda") == torch.float32
    assert t3_dtype_for("bfloat16", "cpu") == torch.float32
    with pytest.raises(ValueError, match="float32, bfloat16"):
        t3_dtype_for("float16", "cuda")
    layer = torch.nn.Linear(4, 4)
    assert apply_t3_dtype(layer, "bfloat16", "cpu") == torch.float32
    assert layer.weight.dtype == torch.float32


def test_the_setting_is_read_and_checked() -> None:
    assert Settings.from_env({}).t3_dtype == "float32"
    assert Settings.from_env({"VOICEQ_T3_DTYPE": "bfloat16"}).t3_dtype == "bfloat16"
    with pytest.raises(SettingsError, match="VOICEQ_T3_DTYPE"):
        Settings.from_env({"VOICEQ_T3_DTYPE": "half"})


@pytest.fixture(scope="module")
def bf16_t3(engine):
    return copy.deepcopy(engine.model.t3).to(dtype=torch.bfloat16)


def rows(engine, voices) -> list[T3Row]:
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    hp = engine.model.t3.hp
    out = []
    for i, (text, sp, budget) in enumerate([
        ("Hello there, this is a test.", SamplingParams(), 24),
        ("Hi.", SamplingParams(cfg_weight=0.0, temperature=0.6), 24),
        ("A longer sentence, with more words in it than the others.", SamplingParams(top_p=0.8), 7),
    ]):
        v = voices[i % len(voices)]
        cond = T3Cond(speaker_emb=v.t3.speaker_emb, cond_prompt_speech_tokens=v.t3.cond_prompt_speech_tokens,
                      emotion_adv=0.5 * torch.ones(1, 1, 1))
        tokens = engine.text_tokens(text)[0].cpu()
        framed = torch.cat([torch.tensor([hp.start_text_token]), tokens, torch.tensor([hp.stop_text_token])])
        out.append(T3Row(cond, framed, sp, budget, seed=40 + i))
    return out


def test_bfloat16_rows_get_the_tokens_they_get_alone(engine, voices, bf16_t3) -> None:
    batch = rows(engine, voices)
    together = generate(bf16_t3, batch, ignore_stop=True)
    for row, out in zip(batch, together):
        alone = generate(bf16_t3, [row], ignore_stop=True)[0]
        assert torch.equal(alone.tokens, out.tokens)
        assert out.tokens.numel() == row.max_new_tokens
    # It really decoded in bfloat16 (cache and weights), sampling in float32, and bfloat16 is
    # another arithmetic than float32: the same row's tokens part ways.
    dec = SlotDecoder(bf16_t3, 2, 256, ignore_stop=True, max_new_tokens=24)
    assert not dec.admit([(0, batch[0])])
    assert dec.cache.k.dtype == torch.bfloat16 and dec.logits.dtype == torch.float32
    fp32 = generate(engine.model.t3, [batch[0]], ignore_stop=True)[0]
    assert not torch.equal(fp32.tokens, together[0].tokens)
