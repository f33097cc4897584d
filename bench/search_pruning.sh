#!/usr/bin/env bash
# The pruning study of docs/results.md ("Search"): 8 trials of 6 epochs on EURLEX57K domains, unpruned, so that
# bench/search_replay.py replays the same trials under each pruner. Smaller than the laws study (the first 800
# training laws, the first 400 validation laws, 128 tokens) so that 48 epochs fit in an hour on 2 cores; the
# saving is counted in epochs, which work beside the study cannot skew.   bash bench/search_pruning.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash bench/search_pruning.sh OUT_DIR}
DATA=../shared/data/eurlex57k
mkdir -p "$OUT"
time python search.py --study-dir "$OUT/study" --trials 8 --pruner none \
    --space lr=2e-5:5e-4:log --space head_lr_mult=1:30:log --space pos_weight=none,sqrt \
    --model minilm --data "$DATA" --label-column domains --max-train-samples 800 --max-eval-samples 400 \
    --max-length 128 --epochs 6
python bench/search_replay.py --study-dir "$OUT/study"
