#!/usr/bin/env bash
# On the GPU machine, from the repository root, with .whl/ carried beside the checkout
# (fetch_wheels.sh): install the wheels without an index, then print issue 14's GPU table.
#
#   bash benchmarks/gpu/run.sh            # logs and JSON under $OUT (default ./bench-out)
#
# The engine imports without Ray, boto3 or PyAV, so nothing else needs to travel. Steps run
# most-wanted first, each under its own time limit, so a short lease still brings back the
# float32 table: 0. exactness.py (a row's tokens batched, continuous and CUDA-graphed against
# alone, about a minute); 1. float32 against upstream at batch 1-32, the mixed workload
# (continuous against static, the decode step against the memory-bandwidth limit, time to
# first audio); 2. the same with T3 in bfloat16. Override with PYTHON, PEAK_GBS, BENCH_DEVICE, LIMITS_S
# and BENCH_ARGS (replaces each step's size arguments: a CPU rehearsal passes small ones). The
# limits add up to 9.5 minutes: one device command may run 10.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-bench-out}
mkdir -p "$out"
py=${PYTHON:-python3}
site=${SITE:-/tmp/voiceq-site}
device=${BENCH_DEVICE:-cuda}
read -r exact_limit fp32_limit bf16_limit <<<"${LIMITS_S:-90 330 150}"
sizes=${BENCH_ARGS:---full-size --peak-gbs ${PEAK_GBS:-4800} --repeats 2}

"$py" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
    || { echo "run.sh: the carried wheels did not install" >&2; exit 1; }
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
"$py" - <<'PY' 2>&1 | tee "$out/environment.txt"
import platform, torch, transformers, numpy
print("python", platform.python_version(), "torch", torch.__version__, "transformers", transformers.__version__,
      "numpy", numpy.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

step() {  # name, time limit in s, then the benchmark's arguments
    local name=$1 limit=$2; shift 2
    echo "== $name: batch_throughput.py $*" | tee "$out/$name.log"
    timeout "$limit" "$py" benchmarks/batch_throughput.py --device "$device" "$@" --json "$out/$name.json" 2>&1 \
        | tee -a "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || echo "== $name: exit $rc (124: over its ${limit} s)" | tee -a "$out/$name.log"
}
echo "== exactness: exactness.py" | tee "$out/exactness.log"
timeout "$exact_limit" "$py" benchmarks/gpu/exactness.py --device "$device" 2>&1 | tee -a "$out/exactness.log"
# shellcheck disable=SC2086  # the size arguments are words on purpose
step float32 "$fp32_limit" $sizes
# shellcheck disable=SC2086
step bfloat16 "$bf16_limit" $sizes --t3-dtype bfloat16 --upstream-jobs 4 --mixed-e2e
