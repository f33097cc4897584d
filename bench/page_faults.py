"""Where a CPU training step's time goes besides compute: minor page faults, system and user seconds per step,
for truncated or chunked EU laws, built as bench/speed.py builds its (c) and (d) (`ours_training`).

    python bench/page_faults.py --long-doc truncate --steps 8
    python bench/page_faults.py --long-doc chunk --steps 4 --no-mmap   # glibc told to map no block apart

`--no-mmap` adds `mallopt(M_MMAP_MAX, 0)` to model/cpu_fast.py's `keep_freed_memory`: blocks past glibc's 32 MB
mapping ceiling (a batch's attention scores) then come from its heap and are reused instead of being mapped and
faulted in afresh each step. Measured, and not adopted: docs/results.md, Speed.
"""
import argparse
import ctypes
import os
import resource
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

M_MMAP_MAX = -4  # glibc's mallopt parameter (malloc.h)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "eurlex57k"))
    p.add_argument("--label-column", default="domains")
    p.add_argument("--model", default="minilm")
    p.add_argument("--long-doc", default="truncate", choices=["truncate", "chunk"])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--no-mmap", action="store_true", help="glibc maps no block apart (M_MMAP_MAX 0)")
    args = p.parse_args()

    from speed import ours_training

    ours = argparse.Namespace(model=args.model, data=args.data, label_column=args.label_column, max_length=300,
                              batch_size=16, eval_batch_size=64, eval_examples=16, ours_flags=[],
                              train_examples=16 * (args.warmup_steps + args.steps), warmup_steps=args.warmup_steps,
                              steps=args.steps)
    _, _, _, run, timed = ours_training(ours, "c" if args.long_doc == "truncate" else "d")
    if args.no_mmap:
        assert ctypes.CDLL("libc.so.6").mallopt(M_MMAP_MAX, 0) == 1

    run(args.warmup_steps)
    timed.clear()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run(args.steps)
    after, seconds = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
    n = args.steps
    print(f"{args.long_doc}{' --no-mmap' if args.no_mmap else ''}: {sum(timed) / n:.0f} real tokens a step, "
          f"{seconds / n * 1e3:.0f} ms a step ({sum(timed) / seconds:.0f} tokens/s), "
          f"{(after.ru_minflt - before.ru_minflt) / n:.0f} minor faults a step, "
          f"system {(after.ru_stime - before.ru_stime) / n:.2f} s and user {(after.ru_utime - before.ru_utime) / n:.2f} s "
          f"a step, peak RSS {after.ru_maxrss / 2 ** 20:.1f} GB")


if __name__ == "__main__":
    main()
