"""The decode step's shortcuts keep its results: sampling only the live generations'
conditional slots draws what sampling every slot draws for them, and a step records no
autograd graph whatever the caller's grad mode (a benchmark or a caller outside
`inference_mode` must not pay for one)."""

from __future__ import annotations

import copy

import torch

from voiceq.engine.t3_decode import SamplingParams, SlotDecoder, T3Row


def rows(engine, voices) -> list[T3Row]:
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    hp = engine.model.t3.hp
    tokens = engine.text_tokens("Hello there, this is a test.")[0].cpu()
    text = torch.cat([torch.tensor([hp.start_text_token]), tokens, torch.tensor([hp.stop_text_token])])
    settings = [SamplingParams(), SamplingParams(cfg_weight=0.0, top_p=0.8),
                SamplingParams(temperature=1.1, repetition_penalty=1.6, cfg_weight=1.0)]
    return [T3Row(T3Cond(speaker_emb=voices[i].t3.speaker_emb,
                         cond_prompt_speech_tokens=voices[i].t3.cond_prompt_speech_tokens,
                         emotion_adv=0.5 * torch.ones(1, 1, 1)), text, sp, 30, seed=70 + i)
            for i, sp in enumerate(settings)]


def test_sampling_the_live_conditional_slots_draws_what_sampling_every_slot_draws(engine, voices) -> None:
    dec = SlotDecoder(engine.model.t3, 8, 256, ignore_stop=True, max_new_tokens=30)
    assert not dec.admit(list(enumerate(rows(engine, voices))))
    for _ in range(6):
        dec.advance()
    live = dec._sampled_rows()
    assert live.tolist() == sorted(dec._rows) and len(live) == 3  # 5 slots in use, 3 draw
    full, part = copy.deepcopy(dec.sampler), copy.deepcopy(dec.sampler)
    every = full.sample(dec.logits, dec.steps, 8)  # (S,)
    some = part.sample(dec.logits, dec.steps.index_select(0, live), 8, live)  # (3,)
    assert torch.equal(every.index_select(0, live), some)
    assert torch.equal(full.history.index_select(0, live), part.history.index_select(0, live))


def test_a_step_records_no_autograd_graph_whatever_the_callers_mode(engine, voices) -> None:
    assert torch.is_grad_enabled() and any(p.requires_grad for p in engine.model.t3.parameters())
    dec = SlotDecoder(engine.model.t3, 4, 256, ignore_stop=True, max_new_tokens=30)
    assert not dec.admit(list(enumerate(rows(engine, voices)[:2])))
    dec.advance()
    assert not dec.logits.requires_grad and dec.logits.grad_fn is None
    assert not dec.cache.k.requires_grad
