#!/usr/bin/env bash
# Peak memory (and time) of a run on EURLEX57K, for the fused head against the encoder alone (docs/results.md,
# "Memory and checkpoint size"): trains FEATURES on the first TRAIN_LAWS laws of LEVEL for EPOCHS epochs (MiniLM,
# 1,000 validation laws), then evaluates its best.pt on those validation laws, each under /usr/bin/time -v.
#   bash bench/fused_memory.sh OUT_DIR FEATURES TRAIN_LAWS EPOCHS [LEVEL]     e.g. OUT both 2000 3 descriptors
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash bench/fused_memory.sh OUT_DIR FEATURES TRAIN_LAWS EPOCHS [LEVEL]}
FEATURES=${2:?features: encoder, both or auto}
LAWS=${3:?number of training laws}
EPOCHS=${4:?epochs (0: a frozen encoder, fused features only)}
LEVEL=${5:-descriptors}
RUN="$OUT/$LEVEL-$FEATURES-$LAWS-e$EPOCHS"
mkdir -p "$OUT"
/usr/bin/time -v python train.py --model minilm --data ../shared/data/eurlex57k --label-column "$LEVEL" \
    --features "$FEATURES" --epochs "$EPOCHS" --max-train-samples "$LAWS" --max-eval-samples 1000 \
    --output-dir "$RUN" > "$RUN.train.log" 2>&1
/usr/bin/time -v python evaluate.py --ckpt "$RUN/best.pt" --split validation --max-eval-samples 1000 \
    > "$RUN.evaluate.log" 2>&1
for log in "$RUN.train.log" "$RUN.evaluate.log"; do
    echo "$log: $(grep -h 'Maximum resident' "$log" | awk '{print $NF/1024 " MB peak"}'), $(grep -h 'Elapsed' "$log" | awk '{print $NF}') wall"
done
ls -l "$RUN"/*.pt | awk '{print $5/1e6 " MB", $NF}'
