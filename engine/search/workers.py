"""The processes of a study: whether the worker holding a trial is alive (its process on this machine, its heartbeat
on another), the trial's train.py as a child process that dies with its worker, and the wait for a killed trial's
train.py to let go of its run folder."""
import os
import signal
import socket
import subprocess
import time

HEARTBEAT = 30  # seconds between a worker's "alive" marks on its running trial
STALE_AFTER = 300  # a trial of another machine whose worker has not marked it for this long is taken over


def process_start(pid: int) -> str | None:
    """When the process started (Linux's /proc), so that a reused pid is not taken for the worker; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def this_worker() -> dict:
    """What a trial records of the worker running it, for `worker_alive`."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "alive_at": time.time()}


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


def beat(storage, trial_id: int, done) -> None:
    """Mark the trial alive every HEARTBEAT seconds until `done` (a threading.Event) is set."""
    while not done.wait(HEARTBEAT):
        try:
            storage.set_trial_user_attr(trial_id, "alive_at", time.time())
        except Exception:  # a storage that is briefly unreachable: the next beat tries again
            pass


def wait_for_folder(folder: str, log) -> None:
    """A trial taken over from a killed worker: its train.py, told to stop, may still be saving last.pt; wait until
    it has let go of the run folder's lock (engine/training/run_folder.py)."""
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


def die_with_parent():  # in the trial's process, before it runs: a SIGKILLed worker's trial saves and stops
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_child(command: list[str], log_path: str, env: dict, on_signal) -> int:
    """`command` with its output appended to `log_path`, in a session of its own, ended with its worker; a SIGINT or
    SIGTERM to the worker calls `on_signal(signum, process)`. Returns its exit status."""
    with open(log_path, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                   preexec_fn=die_with_parent)
        previous = {s: signal.signal(s, lambda signum, frame: on_signal(signum, process))
                    for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return process.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def last_error(log_path: str) -> str:
    """The last `error:` line of a trial's output (else its last line)."""
    with open(log_path, "rb") as f:
        f.seek(max(0, os.path.getsize(log_path) - 20000))
        lines = f.read().decode(errors="replace").splitlines()
    errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else (lines[-1] if lines else "")
