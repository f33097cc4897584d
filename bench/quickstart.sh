#!/usr/bin/env bash
# README's quick start, timed (docs/results.md, Quick start): the frozen encoder and the fused head on the first
# 1,000 EURLEX57K training laws, scored on the first 500 validation laws, with a cold cache; then the TF-IDF + SVM
# baseline on the same laws.   bash bench/quickstart.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/quickstart-bench}"
cache="$(mktemp -d)"
trap 'rm -rf "$cache"' EXIT
/usr/bin/time -f "train.py: %e s wall, %M KB peak" python train.py --model minilm --data ../shared/data/eurlex57k \
    --label-column domains --epochs 0 --max-train-samples 1000 --max-eval-samples 500 --output-dir "$out" \
    --cache-dir "$cache" --overwrite
/usr/bin/time -f "evaluate.py: %e s wall" python evaluate.py --ckpt "$out/best.pt" --split validation >/dev/null
/usr/bin/time -f "predict.py: %e s wall" python predict.py --ckpt "$out/best.pt" \
    "Council Regulation on the common organisation of the market in wine"
python bench/svm_baseline.py --levels domains --max-train-samples 1000 --max-eval-samples 500
