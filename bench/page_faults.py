"""Where a CPU training step's time goes besides compute: minor page faults, system and user seconds per step,
for truncated or chunked EU laws, built by the trainer's own functions (as bench/speed.py's (c) and (d)).

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

    import torch

    from engine.config import make_config, quiet
    from engine.loop import train_one_epoch
    from engine.losses import training_loss
    from engine.state import build_train_state, resolve_kernels
    from engine.trainer import build_data
    from speed import FirstBatches

    cfg = make_config(model=args.model, data=args.data, label_column=args.label_column, long_doc=args.long_doc,
                      max_train_samples=16 * (args.warmup_steps + args.steps), max_eval_samples=16, cache_dir="")
    device = torch.device("cpu")
    resolve_kernels(cfg, device)
    data = build_data(cfg, None, device, log=quiet)
    torch.manual_seed(cfg["seed"])
    state = build_train_state(cfg, len(data.label_names), args.warmup_steps + args.steps, device)
    if args.no_mmap:
        assert ctypes.CDLL("libc.so.6").mallopt(M_MMAP_MAX, 0) == 1
    state.wrap(False, cfg["compiled"])
    loss_fn, _, _ = training_loss(cfg, data.splits["train"].labels, len(data.label_names), device)
    tokens = []

    def counted(iterator):
        for batch in iterator:
            tokens.append(int(batch["attention_mask"].sum()))
            yield batch

    batches = counted(iter(data.train_loader))

    def run(n):
        state.progress.update(batches_done=0, examples_done=0, tokens_done=0)
        train_one_epoch(state, FirstBatches(batches, n), loss_fn, clip_grad=cfg["clip_grad"], log_every=10 ** 9)

    run(args.warmup_steps)
    tokens.clear()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run(args.steps)
    after, seconds = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
    n = args.steps
    print(f"{args.long_doc}{' --no-mmap' if args.no_mmap else ''}: {sum(tokens) / n:.0f} real tokens a step, "
          f"{seconds / n * 1e3:.0f} ms a step ({sum(tokens) / seconds:.0f} tokens/s), "
          f"{(after.ru_minflt - before.ru_minflt) / n:.0f} minor faults a step, "
          f"system {(after.ru_stime - before.ru_stime) / n:.2f} s and user {(after.ru_utime - before.ru_utime) / n:.2f} s "
          f"a step, peak RSS {after.ru_maxrss / 2 ** 20:.1f} GB")


if __name__ == "__main__":
    main()
