"""Teacher forcing through voiceq's own decoder, for the exactness tests of every backbone."""

from __future__ import annotations

import torch

from voiceq.engine.t3_decode import SlotDecoder, T3Row


def forced_logits(t3, rows: list[T3Row], forced: torch.Tensor) -> torch.Tensor:
    """Guided logits (n, S, V) of each row for a given continuation forced (n, S), through
    the decoder's own prefill and static decode steps."""
    dec = SlotDecoder(t3, sum(SlotDecoder.slots_for(r) for r in rows), 512, ignore_stop=True)
    assert not dec.admit(list(enumerate(rows)))
    cond = torch.tensor([c for c, _ in sorted(dec._rows.items(), key=lambda kv: kv[1][0])])  # row i's slot
    out = [dec.sampler.guide(dec.logits)[cond]]
    for s in range(forced.size(1) - 1):
        tok = torch.zeros(dec.logits.size(0), dtype=torch.long)
        tok[cond] = forced[:, s]
        dec.steps[cond] += 1
        for r in dec._rows.values():
            r[4] += 1
        dec.feed(tok)
        out.append(dec.sampler.guide(dec.logits)[cond])
    return torch.stack(out, dim=1)
