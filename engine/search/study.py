"""A hyperparameter study: trials of train.py, each in its own process and run folder, sampled (TPE), pruned and
stored by Optuna; resumable after any kill, and shared by every search.py worker that names the same storage.

A worker takes a trial (engine/search/queue.py), runs `python -m engine.search.trial` on it (train.py with a pruner
after each epoch: engine/search/workers.py), and records the trial's best epoch (engine/search/results.py). A trial
whose worker died (on this machine: its process is gone; elsewhere: no heartbeat for STALE_AFTER seconds) is failed
and queued again with its settings and run folder, and the worker that takes it continues that run from its last.pt:
it is counted once."""
import json
import os
import shlex
import subprocess
import sys
import threading
import time

from engine.config import ConfigError, with_defaults
from engine.errors import NAMES, Interrupted
from engine.search.queue import ClaimLock, TrialQueue
from engine.search.results import Results, read_records
from engine.search.space import SEARCH_FIELDS, check_study, train_flags
from engine.search.storage import import_optuna, make_pruner, open_storage, storage_url
from engine.search.workers import beat, die_with_parent, last_error, run_child, wait_for_folder
from engine.settings import FIELDS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETTINGS = ("space", "metric", "train_flags")  # what every command of one study must agree on


def check_same_study(study, folder: str, settings: dict) -> None:
    """A study is continued by the command that started it (--trials may grow, and each worker's machine settings,
    --device, --workers, --cache-dir, are its own): other settings are refused."""
    stored = study.user_attrs
    if not stored:
        for key, value in settings.items():
            study.set_user_attr(key, value)
        return
    for key in SETTINGS:
        if stored.get(key) != settings[key]:
            raise ConfigError(f"--study-dir {folder}: its study was started with other {key.replace('_', ' ')}"
                              f" ({stored.get(key)}); run the same command to continue it, or use another "
                              "--study-dir")


class Study:
    """One worker of a study: take trials and run them until the study has its --trials, then report (and with
    --retrain, retrain the best settings)."""

    def __init__(self, given: dict, log=print):
        self.optuna = import_optuna()
        self.dims, train_given = check_study(given)
        options = with_defaults(SEARCH_FIELDS, {k: v for k, v in given.items() if k not in FIELDS})
        self.log, self.metric, self.retrain_best = log, options["metric"], options["retrain"]
        self.folder = os.path.abspath(options["study_dir"])
        os.makedirs(os.path.join(self.folder, "trials"), exist_ok=True)
        self.url, self.pruner = storage_url(options, self.folder), (options["pruner"], options["pruner_startup"])
        self.storage = open_storage(self.url)
        shared = {k: v for k, v in train_given.items() if FIELDS[k].resume != "free"}
        with ClaimLock(self.folder):
            self.study = self.optuna.create_study(
                study_name=os.path.basename(self.folder.rstrip(os.sep)) or "study", storage=self.storage,
                sampler=self.optuna.samplers.TPESampler(seed=options["sampler_seed"]),
                pruner=make_pruner(*self.pruner), direction="maximize", load_if_exists=True)
            check_same_study(self.study, self.folder, {"space": [d.spec for d in self.dims], "metric": self.metric,
                                                       "train_flags": train_flags(shared)})
        searched = {d.name for d in self.dims}
        self.common = train_flags({k: v for k, v in train_given.items() if k not in searched})
        self.common += ["--select-metric", self.metric]
        self.queue = TrialQueue(self.optuna, self.study, self.storage, self.folder, self.dims, train_given,
                                options["trials"], options["sampler_seed"], log)
        self.results = Results(self.study, self.folder, self.metric, self.dims, self.common, log)
        self.stop_signal = None

    def run_trial(self, trial, params: dict, folder: str) -> None:
        attrs, trial_id = trial.user_attrs, self.queue.trial_id(trial.number)
        resumed = os.path.exists(os.path.join(folder, "last.pt"))
        if resumed:
            wait_for_folder(folder, self.log)
        argv = self.common + train_flags(params) + ["--output-dir", folder] + (["--resume", "auto"] if resumed else [])
        shown = " ".join(f"{FIELDS[k].flag} {v:.4g}" if isinstance(v, float) else f"{FIELDS[k].flag} {v}"
                         for k, v in params.items())
        self.log(f"trial {trial.number}: {shown}" + ("  (baseline: the flags given)" if attrs.get("baseline") else "")
                 + (f"  (continues {folder})" if resumed else ""))
        start, done = time.perf_counter(), threading.Event()
        threading.Thread(target=beat, args=(self.storage, trial_id, done), daemon=True).start()
        try:  # a trial pruned before its worker died has ended: it is only recorded
            status = 0 if attrs.get("pruned_at") else self.spawn(trial_id, argv, folder)
        finally:
            done.set()
        wall = attrs.get("wall_s", 0.0) + time.perf_counter() - start
        trial.set_user_attr("wall_s", wall)
        if self.stop_signal is not None:  # this worker was told to stop: the trial is queued again for later
            with ClaimLock(self.folder):
                self.queue.queue_again(self.storage.get_trial(trial_id), f"stopped by {NAMES[self.stop_signal]}")
            raise Interrupted(self.stop_signal, f"interrupted by {NAMES[self.stop_signal]}: trial {trial.number} "
                                                f"saved in {folder}; continue the study with the same command")
        self.finish(trial, trial_id, folder, status, wall)

    def spawn(self, trial_id: int, argv: list[str], folder: str) -> int:
        """The trial's process (its output in trials/N.log); SIGINT and SIGTERM to this worker are passed on once,
        so that train.py saves last.pt and ends. Returns its exit status."""
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-m", "engine.search.trial", self.url, self.study.study_name, str(trial_id),
                   self.metric, json.dumps(list(self.pruner)), "--", *argv]

        def pass_on(signum, process):
            if self.stop_signal is None:
                self.stop_signal = signum
                process.send_signal(signum)

        return run_child(command, folder + ".log", env, pass_on)

    def finish(self, trial, trial_id: int, folder: str, status: int, wall: float) -> None:
        State = self.optuna.trial.TrialState
        records = read_records(folder)
        values = [v for v in (r.get(f"val_{self.metric}") for r in records) if isinstance(v, (int, float))]
        if status != 0 or not values:
            error = last_error(folder + ".log") if os.path.exists(folder + ".log") else ""
            trial.set_user_attr("error", error)
            self.study.tell(trial, state=State.FAIL)
            self.log(f"trial {trial.number}: failed (exit status {status}): {error}")
            if not self.study.get_trials(deepcopy=False, states=(State.COMPLETE, State.PRUNED)):
                raise ConfigError(f"trial {trial.number} failed, and no trial of the study has succeeded: {error} "
                                  f"(its output: {folder}.log)")
            return
        pruned = self.storage.get_trial(trial_id).user_attrs.get("pruned_at")
        best = max(values)
        if pruned:
            self.study.tell(trial, state=State.PRUNED)
        else:
            self.study.tell(trial, best)
        self.log(f"trial {trial.number}: {self.metric} {best:.4f} at its best epoch, {len(records)} epoch(s)"
                 + (f", pruned after epoch {pruned}" if pruned else "") + f", {wall:.0f} s")
        self.results.write()

    def retrain(self, best: dict) -> str | None:
        """--retrain: the best trial's settings on train + validation for its best epoch count, in retrain/ (a
        stopped retrain continues from its last.pt); run by a worker that finds every trial finished. Returns its
        best.pt (the last epoch's), or None while another worker's trial still runs."""
        State = self.optuna.trial.TrialState
        if any(t.state in (State.RUNNING, State.WAITING) for t in self.study.get_trials(deepcopy=False)):
            self.log("--retrain: trials of other workers are still running; the worker that finishes last retrains")
            return None
        folder = os.path.join(self.folder, "retrain")
        checkpoint = os.path.join(folder, "best.pt")
        if len(read_records(folder)) >= best["best_epoch"] and os.path.exists(checkpoint):
            self.log(f"retrained (done before): {checkpoint}")
            return checkpoint
        params = {d.name: best[d.name] for d in self.dims}
        argv = [*self.common, *train_flags(params), "--epochs", str(best["best_epoch"]), "--patience", "0",
                "--train-on-validation", "--output-dir", folder]
        if os.path.exists(os.path.join(folder, "last.pt")):
            argv += ["--resume", "auto"]
        self.log(f"--retrain: trial {best['trial']}'s settings on train + validation for {best['best_epoch']} "
                 f"epoch(s): python train.py {shlex.join(argv)} (its output: {folder}.log)")
        with open(folder + ".log", "ab") as out:
            status = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *argv], stdout=out,
                                    stderr=subprocess.STDOUT, preexec_fn=die_with_parent).returncode
        if status != 0:
            raise ConfigError(f"--retrain: train.py stopped with exit status {status} (its output: {folder}.log); "
                              "run the same command to continue it")
        self.log(f"retrained: {checkpoint} (python evaluate.py --ckpt {checkpoint} --split test)")
        return checkpoint

    def work(self) -> dict:
        while True:
            taken = self.queue.take()
            if taken is None:
                break
            self.run_trial(*taken)
        result = self.results.report()
        if self.retrain_best and result["best"] is not None:
            result["retrained"] = self.retrain(result["best"])
        return result


def run_search(given: dict) -> dict:
    return Study(given).work()
