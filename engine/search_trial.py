"""One trial of a search.py study, in its own process: train.py's run, with the trial's validation metric reported to
the study after each epoch and the run ended there, as finished, when the study's pruner says so.

    python -m engine.search_trial STORAGE_URL STUDY TRIAL_ID METRIC '["median", 2]' -- <train.py flags>
"""
import json
import sys

from engine.config import TRAIN_FIELDS, parse_flags


def reporter(trial, metric: str, pruner: str):
    """after_epoch for engine/trainer.py: report the epoch's metric (once: a resumed trial may have reported it
    before its worker died), then ask the pruner."""
    def after_epoch(record: dict) -> str | None:
        value, epoch = record.get(f"val_{metric}"), record["epoch"]
        if not isinstance(value, (int, float)):
            return None
        if epoch not in trial.storage.get_trial(trial._trial_id).intermediate_values:
            trial.report(value, epoch)
        if trial.should_prune():
            trial.set_user_attr("pruned_at", epoch)
            return f"pruned by the study's {pruner} pruner ({metric} {value:.4f})"
        return None
    return after_epoch


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    url, study_name, trial_id, metric, pruner = argv[:5]
    given = parse_flags(TRAIN_FIELDS, argv[argv.index("--") + 1:])
    from engine.search import import_optuna, make_pruner, open_storage
    from engine.trainer import train_from_flags

    optuna = import_optuna()
    pruner = json.loads(pruner)
    study = optuna.load_study(study_name=study_name, storage=open_storage(url), pruner=make_pruner(*pruner))
    trial = optuna.trial.Trial(study, int(trial_id))
    return train_from_flags(given, reporter(trial, metric, pruner[0]))


if __name__ == "__main__":
    main()
