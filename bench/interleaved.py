"""Chunked against truncated documents, in one process and a few steps at a time: (c), (d) and (f) of
bench/speed.py, built by its `ours_training`, take turns at `--steps` training steps and one evaluation pass,
for `--rounds` rounds. A shared machine's speed drifts (on a 2-core AMX host its bf16 matmul peak went from
502 to 1,073 GFLOP/s between two runs minutes apart), so variants timed in separate processes, one after the
other, compare different machines; taking turns, each round's drift falls on all of them alike.

    python bench/interleaved.py --rounds 6 --steps 3      # EU laws, MiniLM, batch 16, 300 tokens
    python bench/interleaved.py --variants cd --group-costs 64 1024 4096   # (d) at three costs of a window group

Prints real (non-pad) tokens/s over all rounds, per variant, in training and in evaluation, and the ratios.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "eurlex57k"))
    p.add_argument("--label-column", default="domains")
    p.add_argument("--model", default="minilm")
    p.add_argument("--max-length", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--eval-examples", type=int, default=128, help="the validation examples of each round's pass")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=3, help="training steps of each variant in a round")
    p.add_argument("--variants", default="cdf", help="of bench/speed.py's c, d, e and f")
    p.add_argument("--group-costs", type=int, nargs="+", default=None,
                   help="(d) at each of these costs of a window group (data/batching.py, GROUP_COST_TOKENS), in turns")
    args = p.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # the evaluation passes' progress bars

    from engine.predictions import collect_probabilities
    from speed import COMPARED, VARIANTS, FirstBatches, ours_training

    steps = args.rounds * args.steps * len(args.group_costs or [None])  # the most one build trains
    ours = argparse.Namespace(**{**vars(args), "steps": steps}, ours_flags=[], warmup_steps=1,
                              train_examples=args.batch_size * (1 + steps))
    built = {v: ours_training(ours, v) for v in args.variants}
    turns = {v: (v, None) for v in args.variants}  # name -> (variant, group cost)
    if args.group_costs and "d" in built:
        del turns["d"]
        turns.update({f"d@{cost}": ("d", cost) for cost in args.group_costs})
    totals = {name: {"train_tokens": 0, "train_seconds": 0.0, "eval_tokens": 0, "eval_seconds": 0.0} for name in turns}

    def evaluate(v, batches=None) -> int:
        """An evaluation pass of variant `v` (over its first `batches` only, if given) -> the real tokens read."""
        _, data, state, _, _ = built[v]
        loader = data.val_loader if batches is None else FirstBatches(data.val_loader, batches)
        collect_probabilities(state.eval_model, loader, state.device, state.amp_dtype)
        return int(data.val_loader.dataset.window_lengths.sum())

    for v, (_, _, _, run_steps, timed) in built.items():  # warm up: a step and an evaluation batch
        run_steps(1)
        evaluate(v, batches=1)
        timed.clear()
    for round_ in range(args.rounds):
        line = []
        for name, (v, cost) in turns.items():
            _, data, _, run_steps, timed = built[v]
            if cost is not None:
                data.train_loader.collate_fn.group_cost = data.val_loader.collate_fn.group_cost = cost
            start = time.perf_counter()
            run_steps(args.steps)
            train_seconds = time.perf_counter() - start
            start = time.perf_counter()
            eval_tokens = evaluate(v)
            eval_seconds = time.perf_counter() - start
            t = totals[name]
            t["train_tokens"] += sum(timed)
            t["train_seconds"] += train_seconds
            t["eval_tokens"] += eval_tokens
            t["eval_seconds"] += eval_seconds
            line.append(f"({name}) train {sum(timed) / train_seconds:.0f} eval {eval_tokens / eval_seconds:.0f}")
            timed.clear()
        print(f"round {round_ + 1}, real tokens/s: " + ", ".join(line), flush=True)
    rates = {name: {phase: t[f"{phase}_tokens"] / t[f"{phase}_seconds"] for phase in ("train", "eval")}
             for name, t in totals.items()}
    print(f"\nreal tokens/s over {args.rounds} rounds of {args.steps} steps of {args.batch_size} and one pass over "
          f"{args.eval_examples} validation documents:")
    for name, r in rates.items():
        v, cost = turns[name]
        label = VARIANTS[v] + ("" if cost is None else f", window groups at a cost of {cost} tokens")
        print(f"({name}) {label}: training {r['train']:.0f}, evaluation {r['eval']:.0f}")
    for name, (v, _) in turns.items():
        for other in COMPARED.get(v, ""):
            if other in rates:
                a, b = rates[name], rates[other]
                print(f"({name})/({other}): training {a['train'] / b['train']:.2f}x, "
                      f"evaluation {a['eval'] / b['eval']:.2f}x")


if __name__ == "__main__":
    main()
