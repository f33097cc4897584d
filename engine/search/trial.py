"""One trial of a search.py study, in its own process: train.py's run, with the trial's validation metric reported to
the study after each epoch and the run ended there, as finished, when the study's pruner says so.

    python -m engine.search.trial STORAGE_URL STUDY TRIAL_ID METRIC '["median", 2]' -- <train.py flags>
"""
import json
import sys

from engine.config import parse_flags
from engine.settings import TRAIN_FIELDS


def reporter(study, storage, trial_id: int, metric: str, pruner: str):
    """after_epoch for engine/training/trainer.py: report the epoch's metric to the storage (once: a resumed trial
    may have reported it before its worker died), then ask the study's pruner about the trial as it now stands."""
    def after_epoch(record: dict) -> str | None:
        value, epoch = record.get(f"val_{metric}"), record["epoch"]
        if not isinstance(value, (int, float)):
            return None
        if epoch not in storage.get_trial(trial_id).intermediate_values:
            storage.set_trial_intermediate_value(trial_id, epoch, value)
        if study.pruner.prune(study, storage.get_trial(trial_id)):
            storage.set_trial_user_attr(trial_id, "pruned_at", epoch)
            return f"pruned by the study's {pruner} pruner ({metric} {value:.4f})"
        return None
    return after_epoch


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    url, study_name, trial_id, metric, pruner = argv[:5]
    given = parse_flags(TRAIN_FIELDS, argv[argv.index("--") + 1:])
    from engine.search.storage import import_optuna, make_pruner, open_storage
    from engine.training.trainer import train_from_flags

    optuna = import_optuna()
    pruner = json.loads(pruner)
    storage = open_storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=make_pruner(*pruner))
    return train_from_flags(given, reporter(study, storage, int(trial_id), metric, pruner[0]))


if __name__ == "__main__":
    main()
