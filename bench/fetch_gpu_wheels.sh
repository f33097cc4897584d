#!/usr/bin/env bash
# Wheels that bench/gpu_check.sh needs and the GPU machines lack, for Python 3.12 on manylinux x86-64, into a
# folder (default bench/wheels) that travels with the check. The GPU machines have PyTorch, transformers,
# tokenizers, tensorboard, scikit-learn, tqdm and accelerate but no network; the check needs only pytest
# besides (this project reads local csv/tsv/jsonl without `datasets`). Run it where PyPI can be reached:
#     bash bench/fetch_gpu_wheels.sh [DIR]
set -euo pipefail
dir=${1:-"$(dirname "$0")/wheels"}
mkdir -p "$dir"
python -m pip download --quiet --disable-pip-version-check --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 --dest "$dir" pytest >&2
du -sh "$dir" >&2
echo "$dir"
