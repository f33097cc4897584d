"""What each pruner saves on the same trials: a study run with `search.py --pruner none` is replayed, trial by
trial in its order, under each pruner, each trial stopped after the epoch where that pruner would have stopped it.
Training is deterministic (the same seed gives the same epochs bitwise: tests/test_train_evaluate.py), so a
pruned trial's epochs are the unpruned trial's first ones, and the saving is exact, not estimated.

    python bench/search_replay.py --study-dir studies/domains

Prints, per pruner: the trials pruned, the time of the trials (each trial's wall time less the epochs it would not
have run) against the unpruned study's, the epochs run against the unpruned study's (the measure that work beside
the study on the same cores cannot skew: every trial's epoch is the same work), and whether the study's best trial
would still have finished.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.search.results import epoch_seconds, read_records  # noqa: E402
from engine.search.storage import import_optuna, make_pruner, open_storage  # noqa: E402


def replay(trials: list, metric: str, pruner) -> tuple[float, int, list[int], int | None]:
    """(seconds, epochs, trials pruned, the best complete trial) of these trials run in order under `pruner`."""
    optuna = import_optuna()
    study = optuna.create_study(direction="maximize", pruner=pruner)
    seconds, epochs, pruned, best = 0.0, 0, [], (None, None)
    for original in trials:
        records = read_records(original.user_attrs["folder"])
        seconds += original.user_attrs.get("wall_s", 0.0) - sum(epoch_seconds(r) for r in records)
        trial = study.ask()
        stopped = False
        for record in records:
            seconds += epoch_seconds(record)
            epochs += 1
            trial.report(record[f"val_{metric}"], record["epoch"])
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                pruned.append(original.number)
                stopped = True
                break
        if not stopped:
            value = max(r[f"val_{metric}"] for r in records)
            study.tell(trial, value)
            if best[0] is None or value > best[0]:
                best = (value, original.number)
    return seconds, epochs, pruned, best[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study-dir", required=True)
    p.add_argument("--storage", default=None, help="default: the study folder's study.db")
    p.add_argument("--startup", type=int, nargs="+", default=[1, 2, 3], help="median pruner's --pruner-startup")
    args = p.parse_args()
    optuna = import_optuna()
    folder = os.path.abspath(args.study_dir)
    url = args.storage or "sqlite:///" + os.path.join(folder, "study.db")
    study = optuna.load_study(study_name=os.path.basename(folder.rstrip(os.sep)), storage=open_storage(url))
    metric = study.user_attrs["metric"]
    retried = {t.system_attrs.get("retry_of") for t in study.get_trials()}
    trials = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if t.number not in retried]
    full, all_epochs, _, best = replay(trials, metric, make_pruner("none", 0))
    print(f"{len(trials)} trials unpruned: {full:.0f} s, {all_epochs} epochs; best trial {best}")
    for name, startup in [("median", s) for s in args.startup] + [("halving", 0)]:
        seconds, epochs, pruned, kept = replay(trials, metric, make_pruner(name, startup))
        label = f"{name} (startup {startup})" if name == "median" else name
        print(f"{label:20s} pruned trials {pruned}: {seconds:.0f} s = {seconds / full:.2f}x the time "
              f"(saves {1 - seconds / full:.0%}), {epochs} of {all_epochs} epochs (saves {1 - epochs / all_epochs:.0%}); "
              f"best trial {kept}" + ("" if kept == best else " (not the best)"))


if __name__ == "__main__":
    main()
