"""search.py's study of train.py runs: its flags and space (space.py), Optuna's storage and pruners (storage.py),
the trial queue (queue.py), the worker's processes (workers.py), what the user reads (results.py), the study that
ties them together (study.py), and one trial's process (trial.py)."""
