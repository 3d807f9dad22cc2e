"""The batched T3 decode for Turbo (GPT-2 backbone) and Multilingual (Llama, grapheme
tokenizer with language tokens): each row of a mixed batch gets what it gets alone, and the
loop's logits are upstream's under teacher forcing.

T3 conditioning here is made up (random speaker embeddings and prompt tokens of different
lengths): the decode does not care where it came from, and preparing real voices costs
S3Gen time. Turbo's tiny T3 starts stopping at an absolute position (prefix included), so
prompt lengths decide which rows stop by themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from voiceq.engine.t3_decode import GPT2Stack, RowSampler, SamplingParams, T3Row, generate, row_prefix, stack_for
from tests.support.forced_decode import forced_logits

TEXTS = [
    "Hello there, this is a test.",
    "A much longer sentence that goes on for a while, with commas, and more words in it than the others.",
    "Hi.",
]


def made_up_cond(seed: int, prompt_tokens: int, exaggeration: float = 0.5):
    from chatterbox.models.t3.modules.cond_enc import T3Cond

    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(1, 256, generator=g), dim=1)
    prompt = torch.randint(0, 6561, (1, prompt_tokens), generator=g)
    return T3Cond(speaker_emb=emb, cond_prompt_speech_tokens=prompt, emotion_adv=exaggeration * torch.ones(1, 1, 1))


def turbo_sampling(**changes) -> SamplingParams:
    base = dict(temperature=0.8, min_p=0.0, top_p=0.95, top_k=1000, repetition_penalty=1.2, cfg_weight=0.0)
    return SamplingParams(**{**base, **changes})


def turbo_rows(engine) -> list[T3Row]:
    """Different prompt lengths (so different left padding and absolute positions), texts,
    settings, budgets and seeds. Rows whose prefix (2 + prompt + text bytes) comes within
    ~20 positions of the stop position stop by themselves; the others end on their budget."""
    settings = [
        (turbo_sampling(), 40, 60),
        (turbo_sampling(temperature=0.5, top_k=50), 40, 58),
        (turbo_sampling(top_p=1.0, top_k=0, repetition_penalty=1.5), 7, 90),
        (turbo_sampling(temperature=1.2, top_p=0.8), 40, 135),
        (turbo_sampling(repetition_penalty=1.0, top_k=5), 40, 20),
    ]
    return [
        T3Row(made_up_cond(i, prompt), engine.frame(engine.text_tokens(TEXTS[i % 3])[0].cpu()), sp, budget,
              seed=500 + i)
        for i, (sp, budget, prompt) in enumerate(settings)
    ]


def test_turbo_text_is_upstreams_and_unframed(turbo_engine):
    from chatterbox.tts_turbo import punc_norm

    text = "hello there… a test"
    ours = turbo_engine.frame(turbo_engine.text_tokens(text)[0].cpu())
    upstream = turbo_engine.model.tokenizer(punc_norm(text), return_tensors="pt", padding=True,
                                            truncation=True).input_ids[0]
    assert torch.equal(ours, upstream)
    assert isinstance(stack_for(turbo_engine.model.t3), GPT2Stack)


def test_turbo_mixed_batch_rows_get_what_they_get_alone(turbo_engine):
    t3 = turbo_engine.model.t3
    rows = turbo_rows(turbo_engine)
    together = generate(t3, rows)
    for row, out in zip(rows, together):
        alone = generate(t3, [row])[0]
        assert torch.equal(alone.tokens, out.tokens)
        assert alone.stopped == out.stopped
    assert {o.stopped for o in together} == {True, False}  # some stop by themselves, some on budget
    assert len({tuple(o.tokens[:5].tolist()) for o in together}) == len(rows)


def test_turbo_deterministic_sampling_matches_upstream_inference_turbo(turbo_engine):
    """top_k = 1 leaves one token, so upstream's multinomial is deterministic: our rows must
    be upstream's `inference_turbo` output, stop included (prompts past the stop position)."""
    t3 = turbo_engine.model.t3
    rows = [
        T3Row(made_up_cond(20 + i, prompt), turbo_engine.text_tokens(TEXTS[i])[0].cpu(),
              turbo_sampling(top_k=1, temperature=t, repetition_penalty=p), 40, seed=i)
        for i, (prompt, t, p) in enumerate([(130, 0.8, 1.2), (55, 1.0, 2.0), (160, 0.6, 1.0)])
    ]
    ours = generate(t3, rows)
    for i, (row, out) in enumerate(zip(rows, ours)):
        sp = row.sampling
        upstream = t3.inference_turbo(made_up_cond(20 + i, row.cond.cond_prompt_speech_tokens.size(1)),
                                      row.text_tokens[None], temperature=sp.temperature, top_k=1,
                                      top_p=sp.top_p, repetition_penalty=sp.repetition_penalty,
                                      max_gen_len=row.max_new_tokens - 1)[0]
        assert out.stopped
        assert torch.equal(upstream.cpu(), out.tokens)


def upstream_forced_logits(t3, row: T3Row, forced: torch.Tensor) -> torch.Tensor:
    """The same through upstream's Hugging Face backbone, one forward pass without a cache
    or padding: (S, V). GPT-2 adds its own positions; the Llama T3 adds speech positions."""
    prefix = row_prefix(t3, row)  # (k, L, D)
    speech = t3.speech_emb(forced[None, :-1])  # (1, S - 1, D)
    if not t3.is_gpt:
        speech = speech + t3.speech_pos_emb.get_fixed_embedding(torch.arange(1, forced.numel()))
    embeds = torch.cat([prefix, speech.expand(prefix.size(0), -1, -1)], dim=1)
    hidden = t3.tfmr(inputs_embeds=embeds).last_hidden_state  # (k, L + S - 1, D)
    logits = t3.speech_head(hidden[:, prefix.size(1) - 1:])  # (k, S, V)
    if prefix.size(0) == 1:
        return logits[0]
    w = row.sampling.cfg_weight
    return logits[0] + w * (logits[0] - logits[1])


def check_forced(t3, rows: list[T3Row]) -> None:
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
    assert (batched[0] - batched[1]).abs().max().item() > 100 * tolerance


@torch.inference_mode()
def test_turbo_teacher_forced_logits_agree_with_upstream_gpt2(turbo_engine):
    check_forced(turbo_engine.model.t3, turbo_rows(turbo_engine))


def multilingual_rows(engine) -> list[T3Row]:
    cases = [
        ("fr", "Bonjour, comment ça va aujourd'hui?", SamplingParams(repetition_penalty=2.0), 64),
        ("de", "Guten Tag.", SamplingParams(cfg_weight=0.0, repetition_penalty=2.0), 64),
        ("en", "Hello there, this is English.", SamplingParams(temperature=1.1, top_p=0.9), 6),
        ("ja", "こんにちは", SamplingParams(cfg_weight=1.0, min_p=0.1), 64),
    ]
    return [
        T3Row(made_up_cond(40 + i, 30 + 20 * i, 0.3 + 0.2 * i),
              engine.frame(engine.text_tokens(text, lang)[0].cpu()), sp, budget, seed=900 + i)
        for i, (lang, text, sp, budget) in enumerate(cases)
    ]


def test_multilingual_text_is_upstreams_with_the_language_token(multilingual_engine):
    """The framed tokens are what ChatterboxMultilingualTTS.generate hands T3 (one row)."""
    from chatterbox.mtl_tts import punc_norm

    model = multilingual_engine.model
    for lang, text in [("fr", "bonjour… le monde"), ("es", "¿Qué tal?"), ("ko", "안녕하세요")]:
        ours = multilingual_engine.frame(multilingual_engine.text_tokens(text, lang)[0].cpu())
        upstream = model.tokenizer.text_to_tokens(punc_norm(text), language_id=lang)
        upstream = F.pad(F.pad(upstream, (1, 0), value=model.t3.hp.start_text_token), (0, 1),
                         value=model.t3.hp.stop_text_token)[0]
        assert torch.equal(ours, upstream.long())
    lang_ids = {multilingual_engine.text_tokens("a", lang)[0, 0].item() for lang in ("fr", "de", "en")}
    assert len(lang_ids) == 3  # each language its own token


def test_multilingual_mixed_languages_batch_rows_get_what_they_get_alone(multilingual_engine):
    t3 = multilingual_engine.model.t3
    assert t3.hp.is_multilingual
    rows = multilingual_rows(multilingual_engine)
    together = generate(t3, rows)
    for row, out in zip(rows, together):
        alone = generate(t3, [row])[0]
        assert torch.equal(alone.tokens, out.tokens)
        assert alone.stopped == out.stopped
    assert together[0].stopped and not together[2].stopped


@torch.inference_mode()
def test_multilingual_teacher_forced_logits_agree_with_upstream_llama(multilingual_engine):
    check_forced(multilingual_engine.model.t3, multilingual_rows(multilingual_engine))


@torch.inference_mode()
def test_turbo_logits_processing_is_upstreams_processor_list():
    """Our top-k/top-p from one partial sort, and the penalty after them, give the logits
    upstream's `inference_turbo` processors give, row by row (no model needed)."""
    from transformers.generation.logits_process import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                                        TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    V = 6563
    settings = [turbo_sampling(), turbo_sampling(temperature=0.5, top_k=50, top_p=0.5),
                turbo_sampling(top_k=0, top_p=0.9, repetition_penalty=1.5), turbo_sampling(top_k=7, top_p=1.0),
                turbo_sampling(temperature=1.3, top_k=2000, repetition_penalty=2.0)]
    rows = [T3Row(cond=None, text_tokens=torch.tensor([1]), sampling=sp, max_new_tokens=10, seed=i)  # type: ignore[arg-type]
            for i, sp in enumerate(settings)]
    g = torch.Generator().manual_seed(0)
    for step in (0, 4):
        sampler = RowSampler(rows, V, 6561, torch.device("cpu"), torch.float32, turbo=True)
        history = torch.randint(0, 6561, (len(rows), step), generator=g)
        sampler.history[:, 1 : step + 1] = history
        logits = 3 * torch.randn(len(rows), V, generator=g)
        ours = sampler._processed(logits, step)
        for i, sp in enumerate(settings):
            procs = LogitsProcessorList([TemperatureLogitsWarper(sp.temperature)])
            if sp.top_k:
                procs.append(TopKLogitsWarper(sp.top_k))
            if sp.top_p < 1.0:
                procs.append(TopPLogitsWarper(sp.top_p))
            if sp.repetition_penalty != 1.0:
                procs.append(RepetitionPenaltyLogitsProcessor(sp.repetition_penalty))
            ids = torch.tensor([[6561]]) if step == 0 else history[i : i + 1]
            expected = procs(ids, logits[i : i + 1].clone())[0]
            assert torch.equal(torch.isfinite(ours[i]), torch.isfinite(expected)), (step, i)
            kept = torch.isfinite(expected)
            assert torch.allclose(ours[i][kept], expected[kept], rtol=0, atol=1e-5)
