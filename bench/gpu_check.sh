#!/usr/bin/env bash
# Proves the CUDA paths on a GPU machine with no network, in one command (under 8 minutes on one H100):
#     bash bench/fetch_gpu_wheels.sh          # once, where PyPI can be reached: pytest's wheels into bench/wheels
#     bash bench/gpu_check.sh OUT_DIR
# 1. the machine (GPU, driver, versions) and the packages it lacks; pytest is installed from bench/wheels with
#    pip --no-index into a folder of its own (nothing installed is touched);
# 2. the CUDA tests (tests/test_cuda.py: bf16 and fp16 autocast training, SIGKILL + resume on CUDA, evaluation
#    on CUDA, checkpoints moved between CUDA and CPU);
# 3. a random-weight BERT of bert-base's shape and synthetic documents (bench/gpu_data.py);
# 4. bench/speed.py on long documents (all truncated at 300 tokens) and on short ones: (a) the notebook's
#    Trainer, (b) the tuned Trainer, (c) this codebase, and on the long ones (d) this codebase with
#    --long-doc chunk: samples/s, tokens/s, MFU against the bf16 matmul
#    peak measured in the same run, peak GPU memory.
# Everything it prints goes to OUT_DIR: report.md (the summary), cuda-tests.txt, speed-long.txt, speed-short.txt.
# GPU_CHECK_SMOKE=1 runs the same steps with a tiny model and a few steps (on a CPU, the CUDA tests skip).
set -uo pipefail
out=${1:?usage: bash bench/gpu_check.sh OUT_DIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.." || exit 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
report="$out/report.md"
failed=()
if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
  model_flags=(--layers 2 --hidden 64 --docs 120)
  speed_flags=(--rounds 1 --steps 3 --warmup-steps 1 --notebook-steps 2 --eval-examples 16)
  test_timeout=120 speed_timeout=240
else
  model_flags=()
  speed_flags=(--rounds 2 --steps 60 --warmup-steps 5 --notebook-steps 10 --eval-examples 512)
  test_timeout=300 speed_timeout=200
fi

{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "no nvidia-smi"
  python - <<'PY' 2>&1
import importlib.util, platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
wanted = ["transformers", "tokenizers", "tensorboard", "sklearn", "tqdm", "numpy", "accelerate", "pytest"]
print("missing: " + (", ".join(m for m in wanted if importlib.util.find_spec(m) is None) or "nothing"))
PY
  echo '```'
} > "$report"

# pytest, where it is missing: from the wheels that travel with the check, into a folder of its own
if ! python -c "import pytest" 2>/dev/null; then
  if python -m pip install --quiet --no-index --find-links bench/wheels --target "$work/deps" pytest >> "$report" 2>&1; then
    export PYTHONPATH="$work/deps${PYTHONPATH:+:$PYTHONPATH}"
    echo "pytest installed from bench/wheels into a folder of its own" >> "$report"
  else
    echo "pytest is missing and bench/wheels cannot provide it (run bash bench/fetch_gpu_wheels.sh first)" >> "$report"
    failed+=("pytest install")
  fi
fi

echo -e "\n## CUDA tests" >> "$report"
timeout "$test_timeout" python -m pytest -m cuda -v -rs -p no:cacheprovider tests/test_cuda.py > "$out/cuda-tests.txt" 2>&1
code=$?
[ $code -eq 0 ] || failed+=("CUDA tests (exit $code)")
{ echo '```'; grep -E "PASSED|FAILED|SKIPPED|ERROR|passed|failed|skipped" "$out/cuda-tests.txt" | tail -n 20; echo '```'; } >> "$report"

python bench/gpu_data.py "$work/data" "${model_flags[@]}" > /dev/null 2> "$out/gpu-data.txt" || failed+=("bench/gpu_data.py")
for kind in long short; do
  echo -e "\n## Speed, $kind documents" >> "$report"
  variants=abc
  [ "$kind" = long ] && variants=abcd  # (d): every window of a long document (--long-doc chunk)
  timeout "$speed_timeout" python bench/speed.py --model "$work/data/model" --data "$work/data/$kind" \
      --variants "$variants" "${speed_flags[@]}" > "$out/speed-$kind.txt" 2>&1
  code=$?
  [ $code -eq 0 ] || failed+=("speed, $kind (exit $code)")
  { echo '```'; grep -vE "^round " "$out/speed-$kind.txt" | tail -n 16; echo '```'; } >> "$report"
done

if [ ${#failed[@]} -gt 0 ]; then
  echo -e "\nFAILED: ${failed[*]}" >> "$report"
  cat "$report"
  exit 1
fi
echo -e "\nall steps passed" >> "$report"
cat "$report"
