#!/usr/bin/env bash
# Here (any machine with pip and the package index), from the repository root: download the
# wheels benchmarks/gpu/wheels.txt names, built for the GPU machine (CPython 3.12, x86-64
# manylinux), into .whl/ (ignored by git). run.sh installs them there without an index.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.whl
mkdir -p "$dest"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$dest" -r benchmarks/gpu/wheels.txt
# One version of each: an older download left beside a newer one stops the install.
wanted=$(grep -cvE '^\s*(#|$)' benchmarks/gpu/wheels.txt)
have=$(ls "$dest"/*.whl | wc -l)
if [ "$have" -ne "$wanted" ]; then
    echo "fetch_wheels: $have wheels in $dest for $wanted names: empty $dest and run again" >&2
    exit 1
fi
du -sh "$dest"
