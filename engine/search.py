"""A hyperparameter study: trials of train.py, each in its own process and run folder, sampled (TPE), pruned and
stored by Optuna; resumable after any kill, and shared by every search.py worker that names the same storage.

A worker takes a trial, runs `python -m engine.search_trial` on it (train.py with a pruner after each epoch), and
records the trial's best epoch. A trial whose worker died (on this machine: its process is gone; elsewhere: no
heartbeat for STALE_AFTER seconds) is failed and queued again with its settings and run folder, and the worker
that takes it continues that run from its last.pt: it is counted once."""
import csv
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

from data.errors import InputError
from engine.checkpoint import atomic_write, write_json
from engine.config import FIELDS, ConfigError, with_defaults
from engine.errors import NAMES, Interrupted
from engine.search_space import SEARCH_FIELDS, baseline, check_study, train_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEARTBEAT = 30  # seconds between a worker's "alive" marks on its running trial
STALE_AFTER = 300  # a trial of another machine whose worker has not marked it for this long is taken over
SETTINGS = ("space", "metric", "train_flags")  # what every command of one study must agree on


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


def process_start(pid: int) -> str | None:
    """When the process started (Linux's /proc), so that a reused pid is not taken for the worker; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def worker_alive(attrs: dict) -> bool:
    """Whether the worker that holds a running trial is still at work. On this machine its process tells at once;
    on another, its heartbeat."""
    if attrs.get("host") == socket.gethostname() and "pid" in attrs:
        try:
            os.kill(attrs["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return process_start(attrs["pid"]) == attrs.get("pid_start")
    return time.time() - attrs.get("alive_at", 0) < STALE_AFTER


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


def wait_for_folder(folder: str, log) -> None:
    """A trial taken over from a killed worker: its train.py, told to stop, may still be saving last.pt; wait until
    it has let go of the run folder's lock (engine/run_folder.py)."""
    lock = os.path.join(folder, ".lock")
    if not os.path.exists(lock):
        return
    import fcntl

    fd = os.open(lock, os.O_RDONLY)
    try:
        for waited in range(10**6):
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if waited == 0:
                    log(f"waiting for the train.py that still holds {folder} to save and end")
                time.sleep(0.5)
    finally:
        os.close(fd)


def read_records(folder: str) -> list[dict]:
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def epoch_seconds(record: dict) -> float:
    return sum(record.get(k, 0) for k in ("train_seconds", "train_embed_seconds", "train_fit_seconds",
                                          "val_seconds"))


def die_with_parent():  # in the trial's process, before it runs: a SIGKILLed worker's trial saves and stops
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Study:
    def __init__(self, given: dict, log=print):
        self.optuna = import_optuna()
        self.dims, self.train_given = check_study(given)
        options = with_defaults(SEARCH_FIELDS, {k: v for k, v in given.items() if k not in FIELDS})
        self.log, self.metric, self.trials = log, options["metric"], options["trials"]
        self.retrain_best = options["retrain"]
        self.folder = os.path.abspath(options["study_dir"])
        os.makedirs(os.path.join(self.folder, "trials"), exist_ok=True)
        self.url = storage_url(options, self.folder)
        self.pruner = (options["pruner"], options["pruner_startup"])
        self.sampler_seed = options["sampler_seed"]
        name = os.path.basename(self.folder.rstrip(os.sep)) or "study"
        storage = open_storage(self.url)
        with ClaimLock(self.folder):
            self.study = self.optuna.create_study(study_name=name, storage=storage, sampler=self.sampler_for(0),
                                                  pruner=make_pruner(*self.pruner), direction="maximize",
                                                  load_if_exists=True)
            self.check_same_study()
        searched = {d.name for d in self.dims}
        self.common = train_flags({k: v for k, v in self.train_given.items() if k not in searched})
        self.common += ["--select-metric", self.metric]
        self.stop_signal = None

    def check_same_study(self) -> None:
        """A study is continued by the command that started it (--trials may grow, and each worker's machine settings,
        --device, --workers, --cache-dir, are its own): other settings are refused."""
        shared = {k: v for k, v in self.train_given.items() if FIELDS[k].resume != "free"}
        settings = {"space": [d.spec for d in self.dims], "metric": self.metric, "train_flags": train_flags(shared)}
        stored = self.study.user_attrs
        if not stored:
            for key, value in settings.items():
                self.study.set_user_attr(key, value)
            return
        for key in SETTINGS:
            if stored.get(key) != settings[key]:
                raise ConfigError(f"--study-dir {self.folder}: its study was started with other {key.replace('_', ' ')}"
                                  f" ({stored.get(key)}); run the same command to continue it, or use another "
                                  "--study-dir")

    # -- taking a trial --------------------------------------------------------------------------------------------
    def sampler_for(self, taken: int):
        """TPE seeded with --sampler-seed plus the trials the study holds: a sampler seeded once per process drew
        the same first settings again in a resumed study, and in every worker of a shared one."""
        return self.optuna.samplers.TPESampler(seed=self.sampler_seed + taken)

    def counted(self, trials) -> int:
        """Trials that count against --trials: all but those failed by a dead worker and queued again (the queued
        copy counts, and so does every finished, running or failed trial)."""
        retried = {t.system_attrs.get("retry_of") for t in trials}
        State = self.optuna.trial.TrialState
        return sum(1 for t in trials if t.state != State.WAITING and t.number not in retried)

    def take_over_dead(self, trials) -> None:
        """Fail every running trial whose worker is gone and queue it again."""
        State = self.optuna.trial.TrialState
        for t in trials:
            if t.state == State.RUNNING and not worker_alive(t.user_attrs):
                self.queue_again(t, "its worker is gone")

    def queue_again(self, t, why: str) -> None:
        """Fail a running trial and queue a copy with its settings, run folder, reports and time, which the worker
        that takes it continues from the folder's last.pt (another worker may have done so first: then nothing)."""
        State = self.optuna.trial.TrialState
        try:
            if not self.study._storage.set_trial_state_values(t._trial_id, State.FAIL):
                return
        except self.optuna.exceptions.UpdateFinishedTrialError:
            return
        self.study.add_trial(self.optuna.trial.create_trial(
            state=State.WAITING, params=t.params, distributions=t.distributions,
            user_attrs={k: v for k, v in t.user_attrs.items() if k in ("folder", "baseline", "wall_s", "pruned_at")},
            intermediate_values=t.intermediate_values, system_attrs={"retry_of": t.number}))
        self.log(f"trial {t.number}: {why}; queued again, to continue from its run folder")

    def take_trial(self):
        """The next trial for this worker, or None when the study has its --trials."""
        with ClaimLock(self.folder):
            trials = self.study.get_trials(deepcopy=False)
            self.take_over_dead(trials)
            trials = self.study.get_trials(deepcopy=False)
            State = self.optuna.trial.TrialState
            if not trials:
                first = baseline(self.dims, self.train_given)
                if first is not None:
                    self.study.enqueue_trial(first, user_attrs={"baseline": True}, skip_if_exists=True)
                else:
                    self.log("the flags given (or train.py's defaults) lie outside the space: no baseline trial")
            elif self.counted(trials) >= self.trials and not any(t.state == State.WAITING for t in trials):
                return None
            self.study.sampler = self.sampler_for(len(trials))
            trial = self.study.ask()
            params = {d.name: d.suggest(trial) for d in self.dims}
            folder = trial.user_attrs.get("folder") or os.path.join(self.folder, "trials", str(trial.number))
            for key, value in {"folder": folder, "host": socket.gethostname(), "pid": os.getpid(),
                               "pid_start": process_start(os.getpid()), "alive_at": time.time()}.items():
                trial.set_user_attr(key, value)
        return trial, params, folder

    # -- running it ------------------------------------------------------------------------------------------------
    def heartbeat(self, trial, done: threading.Event) -> None:
        while not done.wait(HEARTBEAT):
            try:
                self.study._storage.set_trial_user_attr(trial._trial_id, "alive_at", time.time())
            except Exception:  # a storage that is briefly unreachable: the next beat tries again
                pass

    def run_trial(self, trial, params: dict, folder: str) -> None:
        attrs = trial.user_attrs
        resumed = os.path.exists(os.path.join(folder, "last.pt"))
        if resumed:
            wait_for_folder(folder, self.log)
        argv = self.common + train_flags(params) + ["--output-dir", folder] + (["--resume", "auto"] if resumed else [])
        shown = " ".join(f"{FIELDS[k].flag} {v:.4g}" if isinstance(v, float) else f"{FIELDS[k].flag} {v}"
                         for k, v in params.items())
        self.log(f"trial {trial.number}: {shown}" + ("  (baseline: the flags given)" if attrs.get("baseline") else "")
                 + (f"  (continues {folder})" if resumed else ""))
        start, done = time.perf_counter(), threading.Event()
        beat = threading.Thread(target=self.heartbeat, args=(trial, done), daemon=True)
        beat.start()
        try:  # a trial pruned before its worker died has ended: it is only recorded
            status, error = (0, "") if attrs.get("pruned_at") else self.spawn(trial, argv, folder)
        finally:
            done.set()
        wall = attrs.get("wall_s", 0.0) + time.perf_counter() - start
        trial.set_user_attr("wall_s", wall)
        if self.stop_signal is not None:  # this worker was told to stop: the trial is queued again for later
            with ClaimLock(self.folder):
                self.queue_again(self.study._storage.get_trial(trial._trial_id),
                                 f"stopped by {NAMES[self.stop_signal]}")
            raise Interrupted(self.stop_signal, f"interrupted by {NAMES[self.stop_signal]}: trial {trial.number} "
                                                f"saved in {folder}; continue the study with the same command")
        self.finish(trial, folder, status, error, wall)

    def spawn(self, trial, argv: list[str], folder: str) -> tuple[int, str]:
        """The trial's process (its output in trials/N.log); SIGINT and SIGTERM to this worker are passed on once,
        so that train.py saves last.pt and ends. Returns its exit status and its last `error:` line."""
        log_path = folder + ".log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
        command = [sys.executable, "-m", "engine.search_trial", self.url, self.study.study_name,
                   str(trial._trial_id), self.metric, json.dumps(list(self.pruner)), "--", *argv]
        with open(log_path, "ab") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True, preexec_fn=die_with_parent)

            def pass_on(signum, frame):
                if self.stop_signal is None:
                    self.stop_signal = signum
                    process.send_signal(signum)

            previous = {s: signal.signal(s, pass_on) for s in NAMES}
            try:
                status = process.wait()
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
        with open(log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(log_path) - 20000))
            lines = f.read().decode(errors="replace").splitlines()
        errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
        return status, errors[-1] if errors else (lines[-1] if lines else "")


    def finish(self, trial, folder: str, status: int, error: str, wall: float) -> None:
        State = self.optuna.trial.TrialState
        records = read_records(folder)
        values = [r.get(f"val_{self.metric}") for r in records]
        values = [v for v in values if isinstance(v, (int, float))]
        if status != 0 or not values:
            trial.set_user_attr("error", error)
            self.study.tell(trial, state=State.FAIL)
            self.log(f"trial {trial.number}: failed (exit status {status}): {error}")
            finished = [t for t in self.study.get_trials(deepcopy=False, states=(State.COMPLETE, State.PRUNED))]
            if not finished:
                raise ConfigError(f"trial {trial.number} failed, and no trial of the study has succeeded: {error} "
                                  f"(its output: {folder}.log)")
            return
        pruned = self.study._storage.get_trial(trial._trial_id).user_attrs.get("pruned_at")
        best = max(values)
        if pruned:
            self.study.tell(trial, state=State.PRUNED)
        else:
            self.study.tell(trial, best)
        self.log(f"trial {trial.number}: {self.metric} {best:.4f} at its best epoch, {len(records)} epoch(s)"
                 + (f", pruned after epoch {pruned}" if pruned else "") + f", {wall:.0f} s")
        self.write_results()

    # -- what the user reads ---------------------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        rows, trials = [], self.study.get_trials(deepcopy=False)
        retried = {t.system_attrs.get("retry_of") for t in trials}
        for t in trials:
            if t.number in retried:
                continue  # failed by a dead worker: its queued copy is the row
            records = read_records(t.user_attrs.get("folder", ""))
            values = [r.get(f"val_{self.metric}") for r in records]
            scored = [(v, r["epoch"]) for v, r in zip(values, records) if isinstance(v, (int, float))]
            best, epoch = max(scored, key=lambda p: (p[0], -p[1])) if scored else (None, None)
            rows.append({"trial": t.number, "state": t.state.name.lower(), self.metric: best, "best_epoch": epoch,
                         "epochs_run": len(records), "seconds": round(t.user_attrs.get("wall_s", 0.0), 1),
                         "training_seconds": round(sum(epoch_seconds(r) for r in records), 1),
                         "baseline": bool(t.user_attrs.get("baseline")), **t.params,
                         "folder": t.user_attrs.get("folder", "")})
        return rows

    def best_row(self, rows: list[dict]) -> dict | None:
        done = [r for r in rows if r["state"] == "complete" and r[self.metric] is not None]
        return max(done, key=lambda r: (r[self.metric], -r["trial"])) if done else None

    def command(self, row: dict) -> str:
        params = {d.name: row[d.name] for d in self.dims}
        return shlex.join(["python", "train.py", *self.common, *train_flags(params)])

    def write_results(self) -> dict | None:
        """trials.csv, best.json and best.pt (a link to the best trial's best.pt) in the study folder."""
        rows = self.rows()
        text = io.StringIO()
        names = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(text, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(os.path.join(self.folder, "trials.csv"), lambda f: f.write(text.getvalue().encode()))
        best = self.best_row(rows)
        if best is None:
            return None
        checkpoint = os.path.join(best["folder"], "best.pt")
        write_json(os.path.join(self.folder, "best.json"),
                   {"trial": best["trial"], self.metric: best[self.metric], "best_epoch": best["best_epoch"],
                    "settings": {d.name: best[d.name] for d in self.dims}, "command": self.command(best),
                    "checkpoint": checkpoint})
        if os.path.exists(checkpoint):
            link, tmp = os.path.join(self.folder, "best.pt"), os.path.join(self.folder, ".best.pt.tmp")
            if os.path.lexists(tmp):
                os.remove(tmp)
            os.symlink(os.path.relpath(checkpoint, self.folder), tmp)
            os.replace(tmp, link)
        return best

    def report(self) -> dict:
        rows, best = self.rows(), self.write_results()
        columns = ["trial", "state", self.metric, "best_epoch", "epochs_run", "seconds", *[d.name for d in self.dims]]
        def cell(row, column):
            value = row.get(column)
            text = "-" if value is None else f"{value:.4f}" if column == self.metric else \
                f"{value:.4g}" if isinstance(value, float) else str(value)
            return text + ("*" if column == "trial" and row["baseline"] else "")

        table = [columns] + [[cell(r, c) for c in columns] for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
        for row in table:
            self.log("  ".join(cell.rjust(w) for cell, w in zip(row, widths)))
        self.log("(* the baseline: the flags given)" if any(r["baseline"] for r in rows) else "")
        if best is None:
            self.log("no trial has finished every epoch yet")
            return {"best": None, "rows": rows}
        pruned = [r for r in rows if r["state"] == "pruned"]
        self.log(f"best: trial {best['trial']}, {self.metric} {best[self.metric]:.4f} at epoch {best['best_epoch']}"
                 f"; {len(pruned)} of {len(rows)} trials pruned")
        self.log(f"reproduce: {self.command(best)}")
        self.log(f"its checkpoint: {os.path.join(self.folder, 'best.pt')} "
                 f"(python evaluate.py --ckpt {os.path.join(self.folder, 'best.pt')} --split test)")
        return {"best": best, "rows": rows}

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
            taken = self.take_trial()
            if taken is None:
                break
            self.run_trial(*taken)
        result = self.report()
        if self.retrain_best and result["best"] is not None:
            result["retrained"] = self.retrain(result["best"])
        return result


def run_search(given: dict) -> dict:
    return Study(given).work()
