#!/usr/bin/env bash
# The laws study of docs/results.md ("Search"): a 5-trial study on EURLEX57K domains (MiniLM, the first 2,000
# training laws, the first 1,000 validation laws, 3 epochs, unpruned so that bench/search_replay.py can replay it
# under each pruner), then the best trial and the defaults (trial 0) scored once on validation laws 1,001-3,000,
# which no trial saw.   bash bench/search_laws.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash bench/search_laws.sh OUT_DIR}
DATA=../shared/data/eurlex57k
mkdir -p "$OUT"
python - "$DATA/validation.jsonl.gz" "$OUT/heldout_1001_3000.jsonl" <<'PY'
import gzip, itertools, sys
with gzip.open(sys.argv[1], "rt", encoding="utf-8") as src, open(sys.argv[2], "w", encoding="utf-8") as out:
    out.writelines(itertools.islice(src, 1000, 3000))
PY
time python search.py --study-dir "$OUT/study" --trials 5 --pruner none \
    --space lr=2e-5:5e-4:log --space head_lr_mult=1:30:log --space pos_weight=none,sqrt \
    --model minilm --data "$DATA" --label-column domains --max-train-samples 2000 --max-eval-samples 1000 --epochs 3
for ckpt in "$OUT/study/best.pt" "$OUT/study/trials/0/best.pt"; do
    echo "== $ckpt on validation laws 1,001-3,000"
    python evaluate.py --ckpt "$ckpt" --data "$OUT/heldout_1001_3000.jsonl"
done
python bench/search_replay.py --study-dir "$OUT/study"
