"""Optuna, reached through its public API only: the study's storage (SQLite in the study folder, or a shared RDB
URL), its pruners, and a trial's storage id from its number."""
import os
import time
import warnings

from data.errors import InputError


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise InputError('search.py needs Optuna: pip install -e ".[search]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(given: dict, study_dir: str) -> str:
    return given.get("storage") or "sqlite:///" + os.path.join(study_dir, "study.db")


def open_storage(url: str):
    """Optuna's RDB storage; SQLite waits for a busy database (another worker writing) instead of failing."""
    optuna = import_optuna()
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except ImportError as e:  # the database's driver
            raise InputError(f"--storage {url.split('@')[-1]}: needs {e.name or 'its database driver'} "
                             "(PostgreSQL: pip install psycopg2-binary)") from None
        except Exception as e:  # sqlalchemy's: a URL it cannot parse, a server it cannot reach, or two workers
            if attempt == 4:    # creating the tables of a new database at once (the later one tries again)
                raise InputError(f"--storage {url.split('@')[-1]}: {str(e).splitlines()[0]}") from None
            time.sleep(1 + attempt)


def make_pruner(name: str, startup: int):
    """median: Optuna's MedianPruner; halving: its SuccessiveHalvingPruner (rungs at 1, 3, 9 ... epochs, the top
    third goes on); none: no trial stops early. Chosen on EU law: docs/results.md, Search."""
    optuna = import_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def trial_id(storage, study_name: str, number: int) -> int:
    """The storage's id of a study's trial `number` (what the storage's trial methods take)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)
