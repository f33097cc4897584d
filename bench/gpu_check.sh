#!/usr/bin/env bash
# Proves the CUDA paths on a GPU machine with no network, and times them:
#     bash bench/fetch_gpu_wheels.sh          # once, where PyPI can be reached: pytest's wheels into bench/wheels
#     bash bench/gpu_check.sh OUT_DIR [PART ...]
# PARTs, run in the order given (default: all of them, in this order; on one H100 VM, 2026-11-27: tests 3 min,
# each speed part 1 to 3 minutes, as every variant is a fresh process that loads and tokenizes its data; compile more):
#   tests    the CUDA tests (tests/test_cuda.py: bf16 and fp16 autocast training, SIGKILL + resume on CUDA,
#            evaluation on CUDA, checkpoints moved between CUDA and CPU, --compile on CUDA);
#   profile  (c) below, 20 timed steps, then 10 more under torch.profiler: the share of the wall clock the GPU
#            computes, and the ops with the most GPU and host time (profile-profile.txt);
#   long     bench/speed.py on long documents cut at 300 tokens: (a) the notebook's Trainer, (b) the tuned
#            Trainer, (c) this codebase truncating, (d) this codebase with --long-doc chunk (every window);
#   compile  (c) with --compile on --compile-mode default on the same documents (its first steps and first
#            validation batch compile), profiled as above after the timed steps (profile-compile.txt);
#   graphs   (c) as it runs by default on a GPU: --compile auto, CUDA graphs (reduce-overhead) with lengths
#            padded to buckets of 16 tokens; the other speed parts run eager (--compile off);
#   long512  as long, at 512 tokens;
#   mpnet    (b) and (c) at 512 tokens with a random MPNet of the same shape: transformers' eager attention
#            against ours on SDPA (model/mpnet_attention.py);
#   short    (a), (b), (c) on tweet-length documents;
#   laws     (a) to (d) on real EU laws with MiniLM's real weights, both from bench/payload (made where the shared
#            data is: python bench/gpu_payload.py bench/payload; it travels with `--carry bench/payload`;
#            $GPU_PAYLOAD names another folder); in the default parts where the payload is there;
#   lawsdefault  (c) on the same laws as it runs by default on a GPU (CUDA graphs).
# Always first: the machine (GPU, driver, versions) and the packages it lacks (pytest is installed from
# bench/wheels with pip --no-index into a folder of its own: nothing installed is touched), and for the speed
# parts a random-weight BERT of bert-base's shape with synthetic documents (bench/gpu_data.py). Speed parts
# print samples/s, tokens/s, MFU against the matmul peak measured in the same run, and peak GPU memory.
# Everything goes to OUT_DIR: report.md (the summary), cuda-tests.txt, gpu-data.txt, speed-PART.txt.
# GPU_CHECK_SMOKE=1 runs the same steps with a tiny model and a few steps (on a CPU, the CUDA tests skip, and
# compile is left out: Inductor takes minutes on a CPU).
set -uo pipefail
out=${1:?usage: bash bench/gpu_check.sh OUT_DIR [tests|profile|long|compile|graphs|long512|mpnet|short|laws|lawsdefault ...]}
shift
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.." || exit 2
payload=$(realpath -m "${GPU_PAYLOAD:-bench/payload}")
default_parts="tests profile long compile graphs long512 mpnet short"
[ -f "$payload/model/config.json" ] && default_parts+=" laws lawsdefault"
parts=" ${*:-$default_parts} "
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
report="$out/report.md"
failed=()
if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
  model_flags=(--layers 2 --hidden 64 --docs 120 --val-docs 16)
  speed_flags=(--rounds 1 --steps 3 --warmup-steps 1 --notebook-steps 2 --eval-examples 16 --peak-size 256)
  profile_flags=(--steps 2 --profile-steps 2)
  test_timeout=120 speed_timeout=240 compile_timeout=0 laws_train=64 laws_warmup=1
  [[ $parts =~ " "(compile|graphs)" " ]] && echo "compile and graphs: left out of the smoke run (Inductor takes minutes on a CPU)"
  parts=${parts/ compile / }
  parts=${parts/ graphs / }
else
  model_flags=()
  # evaluation needs thousands of documents on a GPU: 512 took about as long as 256 (fixed costs dominated)
  speed_flags=(--rounds 1 --steps 100 --warmup-steps 5 --notebook-steps 20 --eval-examples 2048)
  profile_flags=(--steps 20)
  test_timeout=300 speed_timeout=240 compile_timeout=420 laws_train=2000 laws_warmup=12
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

cuda_tests() {
  echo -e "\n## CUDA tests" >> "$report"
  timeout "$test_timeout" python -m pytest -m cuda -v -rs -p no:cacheprovider tests/test_cuda.py > "$out/cuda-tests.txt" 2>&1
  local code=$?
  [ $code -eq 0 ] || failed+=("CUDA tests (exit $code)")
  { echo '```'; grep -E "PASSED|FAILED|SKIPPED|ERROR|passed|failed|skipped" "$out/cuda-tests.txt" | tail -n 20; echo '```'; } >> "$report"
}

speed() {  # speed NAME TITLE DATA VARIANTS TIMEOUT [more bench/speed.py flags]; $model: the model folder
  local name=$1 title=$2 data=$3 variants=$4 limit=$5
  shift 5
  echo -e "\n## Speed, $title" >> "$report"
  [[ $data = /* ]] || data=$work/data/$data
  timeout "$limit" python bench/speed.py --model "${model:-$work/data/model}" --data "$data" \
      --variants "$variants" "${speed_flags[@]}" "$@" > "$out/speed-$name.txt" 2>&1
  local code=$?
  [ $code -eq 0 ] || failed+=("speed, $title (exit $code)")
  { echo '```'; grep -vE "^round " "$out/speed-$name.txt" | tail -n 16
    [ -f "$out/profile-$name.txt" ] && grep -E "profiled|profiling failed|^GPU kernels:" "$out/profile-$name.txt"; echo '```'; } >> "$report"
}

if [[ $parts =~ " "(profile|long|compile|graphs|long512|mpnet|short)" " ]]; then
  python bench/gpu_data.py "$work/data" "${model_flags[@]}" > /dev/null 2> "$out/gpu-data.txt" || failed+=("bench/gpu_data.py")
fi
if [[ $parts =~ " mpnet " ]]; then
  python bench/gpu_data.py "$work/data" --family mpnet --model-only "${model_flags[@]}" > /dev/null \
      2>> "$out/gpu-data.txt" || failed+=("bench/gpu_data.py --family mpnet")
fi
for part in $parts; do
  case $part in
    tests) cuda_tests ;;
    profile) speed profile "long documents, 300 tokens, (c) profiled" long c "$speed_timeout" "${profile_flags[@]}" \
        --profile-out "$out/profile-profile.txt" --ours-flags --compile off ;;
    long) speed long "long documents, 300 tokens, eager" long abcd "$speed_timeout" --ours-flags --compile off ;;
    compile) speed compile "long documents, 300 tokens, (c) with --compile on --compile-mode default" long c \
        "$compile_timeout" --warmup-steps 12 --profile-out "$out/profile-compile.txt" --ours-flags --compile on \
        --compile-mode default ;;
    graphs) speed graphs "long documents, 300 tokens, (c) as by default on a GPU (--compile auto: CUDA graphs)" long \
        c "$compile_timeout" --warmup-steps 12 --profile-out "$out/profile-graphs.txt" ;;
    long512) speed long512 "long documents, 512 tokens, eager" long abcd "$speed_timeout" --max-length 512 \
        --ours-flags --compile off ;;
    mpnet) model="$work/data/model-mpnet" speed mpnet "long documents, 512 tokens, MPNet, eager" long bc \
        "$speed_timeout" --max-length 512 --ours-flags --compile off ;;
    short) speed short "short documents, eager" short abc "$speed_timeout" --ours-flags --compile off ;;
    laws|lawsdefault) if [ ! -f "$payload/model/config.json" ] || [ ! -f "$payload/laws/train.jsonl.gz" ]; then
        echo -e "\n## $part: no payload at $payload (python bench/gpu_payload.py bench/payload, then carry it)" >> "$report"
        failed+=("part $part: no payload")
      elif [ "$part" = laws ]; then
        model="$payload/model" speed laws "EU laws (bench/payload), 300 tokens, MiniLM, eager" "$payload/laws" abcd \
            "$speed_timeout" --label-column domains --train-examples "$laws_train" --ours-flags --compile off
      else
        model="$payload/model" speed lawsdefault "EU laws (bench/payload), 300 tokens, MiniLM, (c) as by default" \
            "$payload/laws" c "$compile_timeout" --label-column domains --train-examples "$laws_train" --warmup-steps "$laws_warmup"
      fi ;;
    *) echo "unknown part: $part (tests, profile, long, compile, graphs, long512, mpnet, short, laws, lawsdefault)" >> "$report"; failed+=("part $part") ;;
  esac
done

if [ ${#failed[@]} -gt 0 ]; then
  echo -e "\nFAILED: ${failed[*]}" >> "$report"
  cat "$report"
  exit 1
fi
echo -e "\nall steps passed" >> "$report"
cat "$report"
