"""The batched T3 decode loop against each job alone and against upstream's `T3.inference`.

The tiny random T3 of the test checkpoint is shaped to pick its stop token after ~16-25
tokens (through its own logits), so rows stop by themselves unless their budget is smaller.
"""

from __future__ import annotations

import pytest
import torch

from voiceq.engine.t3_decode import SamplingParams, T3Row, T3Stack, generate, row_prefix
from tests.support.forced_decode import forced_logits

TEXTS = [
    "Hello there, this is a test.",
    "A much longer sentence that goes on for a while, with commas, and more words in it than the others.",
    "Hi.",
    "Numbers like 42 and symbols; also quotes: \"yes\".",
]


def framed(engine, text: str) -> torch.Tensor:
    hp = engine.model.t3.hp
    tokens = engine.text_tokens(text)[0].cpu()
    return torch.cat([torch.tensor([hp.start_text_token]), tokens, torch.tensor([hp.stop_text_token])])


def cond(voice, exaggeration: float):
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    return T3Cond(speaker_emb=voice.t3.speaker_emb, cond_prompt_speech_tokens=voice.t3.cond_prompt_speech_tokens,
                  emotion_adv=exaggeration * torch.ones(1, 1, 1))


def mixed_rows(engine, voices) -> list[T3Row]:
    """Different voices, text lengths, settings, budgets and seeds; the guided and unguided
    rows interleaved, top-p on some rows only."""
    settings = [
        (SamplingParams(), 64),
        (SamplingParams(temperature=0.5, cfg_weight=0.0), 64),
        (SamplingParams(temperature=1.2, top_p=0.8, repetition_penalty=1.5), 64),
        (SamplingParams(min_p=0.2, cfg_weight=1.0), 5),  # ends on its budget
        (SamplingParams(cfg_weight=0.0, top_p=0.9), 12),
        (SamplingParams(temperature=0.9, min_p=0.0, repetition_penalty=1.0), 64),
    ]
    return [
        T3Row(cond(voices[i % 3], 0.25 * i), framed(engine, TEXTS[i % len(TEXTS)]), sp, budget, seed=1000 + i)
        for i, (sp, budget) in enumerate(settings)
    ]


def test_every_row_of_a_mixed_batch_gets_the_tokens_it_gets_alone(engine, voices):
    t3 = engine.model.t3
    rows = mixed_rows(engine, voices)
    together = generate(t3, rows)
    for row, out in zip(rows, together):
        alone = generate(t3, [row])[0]
        assert torch.equal(alone.tokens, out.tokens)
        assert alone.stopped == out.stopped
    # The rows really are different generations (a mix-up between rows would show here).
    firsts = {tuple(o.tokens[:5].tolist()) for o in together}
    assert len(firsts) == len(rows)
    # Same seed, same tokens; another seed, other tokens.
    again = generate(t3, [rows[0]])[0]
    reseeded = generate(t3, [T3Row(rows[0].cond, rows[0].text_tokens, rows[0].sampling, 64, seed=7)])[0]
    assert torch.equal(again.tokens, together[0].tokens)
    assert not torch.equal(reseeded.tokens[:10], together[0].tokens[:10])


def test_deterministic_sampling_matches_upstream_inference(engine, voices):
    """With min_p = 1 only the best token survives, so upstream's multinomial draw is
    deterministic: every batched row must reproduce upstream's T3 output, stop included."""
    t3 = engine.model.t3
    settings = [
        SamplingParams(min_p=1.0),
        SamplingParams(min_p=1.0, cfg_weight=0.0, temperature=0.5),
        SamplingParams(min_p=1.0, repetition_penalty=2.0, cfg_weight=1.0, top_p=0.7),
        SamplingParams(min_p=1.0, repetition_penalty=1.0, cfg_weight=0.3),
    ]
    rows = [T3Row(cond(voices[i % 3], 0.2 + 0.4 * i), framed(engine, TEXTS[i]), sp, 48, seed=i)
            for i, sp in enumerate(settings)]
    ours = generate(t3, rows)
    for i, (row, out) in enumerate(zip(rows, ours)):
        text = row.text_tokens[None].expand(2, -1)  # ChatterboxTTS.generate hands T3 two rows
        sp = row.sampling
        upstream = t3.inference(t3_cond=cond(voices[i % 3], 0.2 + 0.4 * i),
                                text_tokens=text, max_new_tokens=row.max_new_tokens, temperature=sp.temperature,
                                cfg_weight=sp.cfg_weight, repetition_penalty=sp.repetition_penalty,
                                min_p=sp.min_p, top_p=sp.top_p)[0]
        assert out.stopped  # the test checkpoint stops by itself well inside 48 tokens
        expected = torch.cat([out.tokens, torch.tensor([t3.hp.stop_speech_token])])
        assert torch.equal(upstream.cpu(), expected)


def upstream_forced_logits(t3, row: T3Row, forced: torch.Tensor) -> torch.Tensor:
    """The same through upstream's Hugging Face Llama, one full forward pass without a
    cache or padding: (S, V)."""
    prefix = row_prefix(t3, row)  # (k, L, D)
    speech = t3.speech_emb(forced[None, :-1]) + t3.speech_pos_emb.get_fixed_embedding(
        torch.arange(1, forced.numel()))  # (1, S - 1, D)
    embeds = torch.cat([prefix, speech.expand(prefix.size(0), -1, -1)], dim=1)
    hidden = t3.tfmr(inputs_embeds=embeds).last_hidden_state  # (k, L + S - 1, D)
    logits = t3.speech_head(hidden[:, prefix.size(1) - 1:])  # (k, S, V)
    if prefix.size(0) == 1:
        return logits[0]
    w = row.sampling.cfg_weight
    return logits[0] + w * (logits[0] - logits[1])


@torch.inference_mode()
def test_teacher_forced_logits_agree_across_batch_shapes_and_with_upstream(engine, voices):
    """Token equality could hinge on a near-tie; the logits themselves must agree within
    float32 noise: batched vs alone (same code, other shapes) and vs upstream's Llama
    forward (other code: its own masks, positions and attention)."""
    t3 = engine.model.t3
    rows = mixed_rows(engine, voices)
    forced = torch.randint(0, 6561, (len(rows), 20), generator=torch.Generator().manual_seed(3))
    batched = forced_logits(t3, rows, forced)  # (n, S, V)
    scale = batched.abs().max().item()
    assert scale > 1.0
    tolerance = 1e-4 * scale  # float32 reassociation across shapes; a wrong position or mask is O(1)
    for i, row in enumerate(rows):
        alone = forced_logits(t3, [row], forced[i : i + 1])[0]
        assert (alone - batched[i]).abs().max().item() < tolerance
        reference = upstream_forced_logits(t3, row, forced[i])
        assert (reference - batched[i]).abs().max().item() < tolerance
    # The rows' logits differ from each other far beyond that tolerance.
    assert (batched[0] - batched[1]).abs().max().item() > 100 * tolerance


def test_rows_stop_on_the_stop_token_or_their_budget(engine, voices):
    t3 = engine.model.t3
    text = framed(engine, TEXTS[0])
    rows = [T3Row(cond(voices[0], 0.5), text, SamplingParams(), budget, seed=5) for budget in (1, 3, 9, 64)]
    outs = generate(t3, rows)
    for row, out in zip(rows[:3], outs[:3]):
        assert not out.stopped and out.tokens.numel() == row.max_new_tokens
    assert outs[3].stopped and 10 < outs[3].tokens.numel() < 64
    assert t3.hp.stop_speech_token not in outs[3].tokens.tolist()
    # A budget only cuts: the short rows are the start of the long one (same seed).
    for out in outs[:3]:
        assert torch.equal(out.tokens, outs[3].tokens[: out.tokens.numel()])
    # Ignoring the stop runs every row to its budget.
    forced_out = generate(t3, rows, ignore_stop=True)
    assert [o.tokens.numel() for o in forced_out] == [1, 3, 9, 64]
    assert not any(o.stopped for o in forced_out)


def test_finished_rows_slots_are_refilled_in_place(engine, voices, monkeypatch):
    """Static shapes: every decode step runs the same number of slots against the same
    preallocated cache; a finished row's slots go to the next waiting row (its own prefill)
    instead of the batch shrinking, and every row still gets the tokens it gets alone."""
    t3 = engine.model.t3
    seen: list[tuple[int, int]] = []
    decode = T3Stack.decode

    def recording(self, tokens, steps, columns, cache, keys, slots=None, out=None):
        seen.append((tokens.numel(), cache.k.data_ptr()))
        return decode(self, tokens, steps, columns, cache, keys, slots, out)

    monkeypatch.setattr(T3Stack, "decode", recording)
    text = framed(engine, TEXTS[2])
    rows = [
        T3Row(cond(voices[0], 0.5), text, SamplingParams(), 2, seed=1),  # guided: 2 slots
        T3Row(cond(voices[1], 0.5), text, SamplingParams(cfg_weight=0.0), 6, seed=2),
        T3Row(cond(voices[2], 0.5), text, SamplingParams(), 64, seed=3),  # waits for the first row's slots
        T3Row(cond(voices[0], 0.9), text, SamplingParams(cfg_weight=0.0), 64, seed=4),  # waits for the second's
    ]
    outs = generate(t3, rows, slots=3)
    # At most the three slots (a CPU leaves out the free slots past the last one in use; a GPU
    # runs all of them in its captured graph), always in the one preallocated cache.
    assert max(w for w, _ in seen) == 3 and seen[0][0] == 3
    assert len({c for _, c in seen}) == 1  # one cache, never reallocated
    # Four rows through three slots: the last two ran while the first two were gone.
    assert len(seen) < sum(o.tokens.numel() + o.stopped for o in outs)
    for row, out in zip(rows, outs):
        alone = generate(t3, [row])[0]
        assert torch.equal(alone.tokens, out.tokens) and alone.stopped == out.stopped


def test_periodic_checks_give_the_same_tokens(engine, voices):
    """On a GPU finished rows are looked for every 16 steps (a check is a sync); rows that
    stopped keep running until then but their tokens must not change."""
    t3 = engine.model.t3
    rows = mixed_rows(engine, voices)
    every_step = generate(t3, rows, check_every=1)
    sparse = generate(t3, rows, check_every=16)
    for a, b in zip(every_step, sparse):
        assert torch.equal(a.tokens, b.tokens) and a.stopped == b.stopped


def test_settings_upstream_would_refuse_are_refused(engine, voices):
    t3 = engine.model.t3
    text = framed(engine, TEXTS[2])
    for bad in (SamplingParams(temperature=0.0), SamplingParams(min_p=1.5), SamplingParams(top_p=0.0),
                SamplingParams(repetition_penalty=-1.0), SamplingParams(cfg_weight=float("nan"))):
        with pytest.raises(ValueError):
            generate(t3, [T3Row(cond(voices[0], 0.5), text, bad, 4)])
    with pytest.raises(ValueError):
        generate(t3, [T3Row(cond(voices[0], 0.5), text, SamplingParams(), 0)])
    assert generate(t3, []) == []


@torch.inference_mode()
def test_left_padding_keeps_each_rows_text_positions(engine, voices):
    """A short text next to a long one gets left padding; its prefix must still be the one
    upstream builds (text positions from 0, both start-of-speech tokens at speech position 0)."""
    t3 = engine.model.t3
    row = T3Row(cond(voices[1], 0.7), framed(engine, TEXTS[2]), SamplingParams(), 4)
    prefix = row_prefix(t3, row)  # (2, L, D)
    text = row.text_tokens[None].expand(2, -1)
    c = cond(voices[1], 0.7)
    embeds, _ = t3.prepare_input_embeds(t3_cond=c, text_tokens=text,
                                        speech_tokens=torch.full((2, 1), t3.hp.start_speech_token), cfg_weight=0.5)
    assert torch.equal(prefix[:, :-1], embeds)
    assert torch.equal(prefix[0, -1], prefix[0, -2])  # upstream feeds start-of-speech twice
    # the unconditional row has no text: its text part is position embeddings only
    n_cond = prefix.size(1) - text.size(1) - 2
    pos = t3.text_pos_emb(text)  # (T, D)
    assert torch.allclose(prefix[1, n_cond : n_cond + text.size(1)], pos)
