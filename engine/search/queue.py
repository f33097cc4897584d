"""The study's trials as work: the next one for a worker (the baseline first, then TPE's, a dead worker's trial
queued again with its settings and run folder), counted against --trials, one worker of a machine at a time."""
import os

from engine.search.space import baseline
from engine.search.storage import trial_id
from engine.search.workers import this_worker, worker_alive


class ClaimLock:
    """One worker of this machine at a time takes a trial: flock on the study folder's .claim (SQLite's writes do
    not lock the rows Optuna reads; PostgreSQL's do, for workers of other machines)."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, ".claim")

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except ImportError:
            pass
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


class TrialQueue:
    def __init__(self, optuna, study, storage, folder: str, dims, train_given: dict, trials: int, sampler_seed: int,
                 log=print):
        self.optuna, self.study, self.storage, self.folder, self.log = optuna, study, storage, folder, log
        self.dims, self.train_given, self.trials, self.sampler_seed = dims, train_given, trials, sampler_seed
        self.State = optuna.trial.TrialState

    def sampler_for(self, taken: int):
        """TPE seeded with --sampler-seed plus the trials the study holds: a sampler seeded once per process drew
        the same first settings again in a resumed study, and in every worker of a shared one."""
        return self.optuna.samplers.TPESampler(seed=self.sampler_seed + taken)

    def trial_id(self, number: int) -> int:
        return trial_id(self.storage, self.study.study_name, number)

    def counted(self, trials) -> int:
        """Trials that count against --trials: all but those failed by a dead worker and queued again (the queued
        copy counts, and so does every finished, running or failed trial)."""
        retried = {t.system_attrs.get("retry_of") for t in trials}
        return sum(1 for t in trials if t.state != self.State.WAITING and t.number not in retried)

    def take_over_dead(self, trials) -> None:
        """Fail every running trial whose worker is gone and queue it again."""
        for t in trials:
            if t.state == self.State.RUNNING and not worker_alive(t.user_attrs):
                self.queue_again(t, "its worker is gone")

    def queue_again(self, t, why: str) -> None:
        """Fail a running trial and queue a copy with its settings, run folder, reports and time, which the worker
        that takes it continues from the folder's last.pt (another worker may have done so first: then nothing)."""
        try:
            if not self.storage.set_trial_state_values(self.trial_id(t.number), self.State.FAIL):
                return
        except self.optuna.exceptions.UpdateFinishedTrialError:
            return
        self.study.add_trial(self.optuna.trial.create_trial(
            state=self.State.WAITING, params=t.params, distributions=t.distributions,
            user_attrs={k: v for k, v in t.user_attrs.items() if k in ("folder", "baseline", "wall_s", "pruned_at")},
            intermediate_values=t.intermediate_values, system_attrs={"retry_of": t.number}))
        self.log(f"trial {t.number}: {why}; queued again, to continue from its run folder")

    def take(self):
        """(the next trial for this worker, its settings, its run folder), or None when the study has its --trials."""
        with ClaimLock(self.folder):
            self.take_over_dead(self.study.get_trials(deepcopy=False))
            trials = self.study.get_trials(deepcopy=False)
            if not trials:
                first = baseline(self.dims, self.train_given)
                if first is not None:
                    self.study.enqueue_trial(first, user_attrs={"baseline": True}, skip_if_exists=True)
                else:
                    self.log("the flags given (or train.py's defaults) lie outside the space: no baseline trial")
            elif self.counted(trials) >= self.trials and not any(t.state == self.State.WAITING for t in trials):
                return None
            self.study.sampler = self.sampler_for(len(trials))
            trial = self.study.ask()
            params = {d.name: d.suggest(trial) for d in self.dims}
            folder = trial.user_attrs.get("folder") or os.path.join(self.folder, "trials", str(trial.number))
            for key, value in {"folder": folder, **this_worker()}.items():
                trial.set_user_attr(key, value)
        return trial, params, folder
