"""The T3 weights' precision: float32 everywhere by default, bfloat16 on a GPU when asked.

bfloat16 halves the bytes a decode step reads (the step is bound by reading the weights on a
GPU) and the KV cache per token, so more rows fit a pass. It is not upstream's arithmetic:
tokens drawn in bfloat16 are not the ones float32 draws. What the batched decode promises in
bfloat16 is what it promises in float32 against its own one-job-at-a-time decode: a row gets
the tokens it gets alone, as long as the device's kernels give a row the same values whatever
else shares its batch. Sampling always runs in float32 on the logits (guidance, penalties and
the cumulative draw over the whole vocabulary would lose the low-probability tail in
bfloat16).

A CPU keeps float32 whatever is asked: most CPUs emulate bfloat16 matrix products (slower
than float32), and a CPU is where the exactness tests against upstream run.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger("voiceq.engine")

T3_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def t3_dtype_for(setting: str, device: str | torch.device) -> torch.dtype:
    """The dtype T3's weights load in for a `VOICEQ_T3_DTYPE` setting on a device."""
    if setting not in T3_DTYPES:
        raise ValueError(f"t3_dtype must be one of {', '.join(T3_DTYPES)}, not {setting!r}")
    if torch.device(device).type == "cpu":
        return torch.float32
    return T3_DTYPES[setting]


def apply_t3_dtype(t3: torch.nn.Module, setting: str, device: str | torch.device) -> torch.dtype:
    """Cast a loaded T3 to the dtype its setting gives on its device; returns that dtype."""
    dtype = t3_dtype_for(setting, device)
    if setting != "float32" and dtype == torch.float32:
        log.info("t3_dtype=%s ignored on %s: a CPU keeps float32", setting, device)
    if dtype != torch.float32:
        t3.to(dtype=dtype)
    return dtype
