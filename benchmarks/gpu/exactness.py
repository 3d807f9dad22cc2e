"""Does a row get the tokens it gets alone on this device, batched, continuously batched and
with the decode step captured as CUDA graphs? The suite checks it on a CPU; this checks the
device paths a CPU never runs (graph capture and replay, the stop check every 16 steps,
attention widths rounded up to 128 columns, bf16 weights).

    python benchmarks/gpu/exactness.py [--device cuda] [--rows 12]

Each comparison prints the rows whose tokens equal their alone-and-eager reference and the
share of equal tokens, then the first differing row. On a GPU, equality holds as far as the
kernels give a row the same values whatever else shares its batch (cuBLAS may pick other
kernels for other row counts): the figures say how far that is. The last line reads
`exact_rows=<equal>/<compared>` over every comparison.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import batch_throughput as bt  # noqa: E402
from voiceq.engine.t3_decode import SamplingParams, T3Output, T3Row, generate  # noqa: E402

# Upstream's defaults, then what users change: temperature, top-p, no guidance, min-p off.
SETTINGS = [SamplingParams(), SamplingParams(temperature=0.6), SamplingParams(top_p=0.8),
            SamplingParams(cfg_weight=0.0), SamplingParams(min_p=0.0, repetition_penalty=1.0)]


def workload(engine, voices: list, n: int) -> list[T3Row]:
    """n rows of different voices, texts, settings and budgets (7 to 90 tokens)."""
    rows = []
    for i, req in enumerate(bt.make_jobs(voices, n)):
        row = engine.plan(i, req).rows[0]
        rows.append(T3Row(row.cond, row.text_tokens, SETTINGS[i % len(SETTINGS)], 7 + (i * 37) % 84, 1000 + i))
    return rows


def compare(name: str, got: list[T3Output], ref: list[T3Output]) -> tuple[int, int]:
    same = [torch.equal(g.tokens, r.tokens) and g.stopped == r.stopped for g, r in zip(got, ref)]
    pairs = [(g.tokens, r.tokens) for g, r in zip(got, ref)]
    equal = sum(int((a[: min(len(a), len(b))] == b[: min(len(a), len(b))]).sum()) for a, b in pairs)
    total = sum(max(len(a), len(b)) for a, b in pairs)
    line = f"  {name:<34} rows {sum(same)}/{len(same)} equal, tokens {100 * equal / max(1, total):.1f}% equal"
    if not all(same):
        k = same.index(False)
        a, b = pairs[k]
        at = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b)))
        line += f"; row {k} first differs at token {at} of {len(b)}"
    print(line, flush=True)
    return sum(same), len(same)


def check(t3, rows: list[T3Row], on_gpu: bool, label: str) -> tuple[int, int]:
    print(f"{label}: {len(rows)} rows, weights {t3.speech_head.weight.dtype}", flush=True)
    def alone(graphs: bool) -> list[T3Output]:
        return [generate(t3, [r], graphs=graphs)[0] for r in rows]

    reference = alone(False)
    runs = [("batched, eager", lambda: generate(t3, rows, graphs=False)),
            ("continuous (6 slots), eager", lambda: generate(t3, rows, graphs=False, slots=6))]
    if on_gpu:
        runs += [("batched, CUDA graphs", lambda: generate(t3, rows, graphs=True)),
                 ("continuous (6 slots), CUDA graphs", lambda: generate(t3, rows, graphs=True, slots=6)),
                 ("alone, CUDA graphs", lambda: alone(True))]
    equal = compared = 0
    for name, run in runs:
        e, c = compare(name, run(), reference)
        equal, compared = equal + e, compared + c
    return equal, compared


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--rows", type=int, default=12)
    args = ap.parse_args(argv)
    on_gpu = args.device == "cuda"
    torch.manual_seed(0)
    engine = bt.engine_class("chatterbox").load(bt.bench_checkpoint(bt.tiny_checkpoint(), full_size=False),
                                                device=args.device, max_speech_tokens=100)
    voices = [engine.prepare_voice(bt.voice_clip(s, i)) for i, s in enumerate([3.0, 2.5, 4.0])]
    rows = workload(engine, voices, args.rows)
    equal, compared = check(engine.model.t3, rows, on_gpu, "float32")
    # bf16 as VOICEQ_T3_DTYPE loads it on a GPU (cast by hand here: a CPU engine keeps float32).
    e, c = check(copy.deepcopy(engine.model.t3).to(torch.bfloat16), rows, on_gpu, "bfloat16")
    print(f"exact_rows={equal + e}/{compared + c}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
