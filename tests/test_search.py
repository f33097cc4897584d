"""search.py: a study of train.py runs (tiny random BERT), pruned, resumable after SIGKILL, shared by workers."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT, epochs_of, expect_error

optuna = pytest.importorskip("optuna")
import search  # noqa: E402


def study_args(tiny_bert, synthetic_folder, study_dir, *extra) -> list[str]:
    """A study of the tiny BERT's encoder head over a log range of learning rates; the baseline trial (--lr 3e-3)
    learns the task, most of the range below it learns nothing in two epochs."""
    return ["--study-dir", str(study_dir), "--space", "lr=1e-7:3e-3:log", "--pruner-startup", "1",
            "--model", tiny_bert, "--data", synthetic_folder, "--features", "encoder", "--epochs", "2",
            "--max-train-samples", "160", "--batch-size", "16", "--lr", "3e-3", "--head-lr-mult", "1",
            "--max-length", "32", "--cache-dir", "", "--amp", "off", "--freeze-embeddings", "none", *extra]


def rows_of(study_dir) -> list[dict]:
    import csv

    with open(os.path.join(study_dir, "trials.csv")) as f:
        return list(csv.DictReader(f))


def run_folders_once(study_dir, rows) -> None:
    """Every trial ran in a folder of its own, each epoch once, and was never resumed."""
    folders = [r["folder"] for r in rows]
    assert len(set(folders)) == len(folders)
    for folder in folders:
        with open(os.path.join(folder, "config.json")) as f:
            assert json.load(f)["resumes"] == []
        epochs = [r["epoch"] for r in epochs_of(folder)]
        assert epochs == list(range(1, len(epochs) + 1))


@pytest.mark.slow
def test_a_study_prunes_the_trials_that_fall_behind_and_links_the_best(tiny_bert, synthetic_folder, tmp_path,
                                                                       capsys):
    study_dir = tmp_path / "study"
    result = search.main(study_args(tiny_bert, synthetic_folder, study_dir, "--trials", "3"))
    rows = result["rows"]
    assert [r["trial"] for r in rows] == [0, 1, 2] and rows[0]["baseline"] and rows[0]["lr"] == 3e-3
    assert {r["state"] for r in rows} <= {"complete", "pruned"}
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert pruned and all(r["epochs_run"] == 1 for r in pruned)  # stopped after the epoch that fell behind
    best = result["best"]
    assert best["state"] == "complete" and best["micro_f1"] == max(r["micro_f1"] for r in rows
                                                                    if r["state"] == "complete")
    # scored at its best epoch, at --threshold, from the run's own records
    assert best["micro_f1"] == max(r["val_micro_f1"] for r in epochs_of(best["folder"]))
    link = study_dir / "best.pt"
    assert os.path.samefile(link, os.path.join(best["folder"], "best.pt"))
    with open(study_dir / "best.json") as f:
        summary = json.load(f)
    assert summary["trial"] == best["trial"] and "--lr" in summary["command"]
    run_folders_once(study_dir, rows_of(study_dir))
    out = capsys.readouterr().out
    assert "reproduce: python train.py" in out and "pruned" in out

    subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), "--ckpt", str(link), "--split", "test"],
                   check=True, capture_output=True, cwd=ROOT)

    # the same command again: nothing to do; other settings: refused before any trial
    again = search.main(study_args(tiny_bert, synthetic_folder, study_dir, "--trials", "3"))
    assert len(again["rows"]) == 3
    expect_error(search.main, study_args(tiny_bert, synthetic_folder, study_dir, "--trials", "4", "--metric",
                                         "macro_f1"), capsys, "started with other metric")

    # --retrain: the best settings once more on train + validation, for the best trial's best epoch count
    retrained = search.main(study_args(tiny_bert, synthetic_folder, study_dir, "--trials", "3", "--retrain"))
    assert retrained["retrained"] == str(study_dir / "retrain" / "best.pt")
    records, trial_records = epochs_of(study_dir / "retrain"), epochs_of(best["folder"])
    assert [r["epoch"] for r in records] == list(range(1, best["best_epoch"] + 1))
    assert records[0]["train_examples"] == trial_records[0]["train_examples"] + trial_records[0]["val_examples"]
    with open(study_dir / "retrain" / "config.json") as f:
        config = json.load(f)
    assert config["train_on_validation"] and config["lr"] == best["lr"] and config["epochs"] == best["best_epoch"]
    again = search.main(study_args(tiny_bert, synthetic_folder, study_dir, "--trials", "3", "--retrain"))
    assert again["retrained"] == retrained["retrained"] and len(epochs_of(study_dir / "retrain")) == len(records)
    assert "done before" in capsys.readouterr().out


def launch(argv, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "search.py"), *argv], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_until(condition, timeout=300):
    start = time.time()
    while not condition():
        assert time.time() - start < timeout, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_study_killed_mid_trial_continues_that_trial_from_its_last_pt(tiny_bert, synthetic_folder, tmp_path):
    study_dir = tmp_path / "study"
    argv = study_args(tiny_bert, synthetic_folder, study_dir, "--trials", "1", "--epochs", "3")
    metrics = study_dir / "trials" / "0" / "metrics.jsonl"
    with open(tmp_path / "worker.log", "wb") as log:
        worker = launch(argv, log)
        wait_until(lambda: metrics.exists() and metrics.read_text().count("\n") >= 1)
        os.kill(worker.pid, signal.SIGKILL)  # its train.py is told to save and stop (PR_SET_PDEATHSIG)
        worker.wait()
    result = search.main(argv)
    rows = result["rows"]
    assert len(rows) == 1 and rows[0]["state"] == "complete" and rows[0]["epochs_run"] == 3
    folder = rows[0]["folder"]
    assert folder == str(study_dir / "trials" / "0")  # the queued copy ran in the killed trial's folder
    with open(os.path.join(folder, "config.json")) as f:
        assert len(json.load(f)["resumes"]) == 1  # continued from last.pt, not started again
    assert [r["epoch"] for r in epochs_of(folder)] == [1, 2, 3]
    trials = optuna.load_study(study_name="study", storage=f"sqlite:///{study_dir}/study.db").get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].system_attrs["retry_of"] == 0


def two_workers(tiny_bert, synthetic_folder, tmp_path, storage=None) -> None:
    study_dir = tmp_path / "study"
    argv = study_args(tiny_bert, synthetic_folder, study_dir, "--trials", "3", "--epochs", "1", "--pruner", "none",
                      *(["--storage", storage] if storage else []))
    storage = storage or f"sqlite:///{study_dir}/study.db"
    workers = []
    for i in range(2):
        log = open(tmp_path / f"worker{i}.log", "wb")
        workers.append((launch(argv, log), log))
    for worker, log in workers:
        assert worker.wait(timeout=600) == 0, (tmp_path / "worker0.log").read_text()
        log.close()
    rows = rows_of(study_dir)
    assert sorted(int(r["trial"]) for r in rows) == [0, 1, 2]
    assert all(r["state"] == "complete" for r in rows)
    run_folders_once(study_dir, rows)
    trials = optuna.load_study(study_name="study", storage=storage).get_trials()
    assert len(trials) == 3 and len({t.user_attrs["pid"] for t in trials}) == 2  # both workers took trials
    assert len({t.params["lr"] for t in trials}) == 3  # each worker's sampler draws settings of its own


@pytest.mark.slow
def test_two_workers_share_a_sqlite_study_without_running_a_trial_twice(tiny_bert, synthetic_folder, tmp_path):
    two_workers(tiny_bert, synthetic_folder, tmp_path)


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of this test's own (initdb, then pg_ctl on a Unix socket); as root, run as the
    postgres user, which the server requires."""
    pytest.importorskip("psycopg2")
    bins = [os.path.dirname(shutil.which("initdb") or "")] + sorted(
        os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql")) \
        if os.path.isdir("/usr/lib/postgresql") else [os.path.dirname(shutil.which("initdb") or "")]
    initdb = next((os.path.join(b, "initdb") for b in bins if b and os.path.exists(os.path.join(b, "initdb"))), None)
    if initdb is None:
        pytest.skip("PostgreSQL's initdb is not installed (.ci/run installs it where it can)")
    folder = tempfile.mkdtemp(prefix="pg-", dir="/tmp")
    os.chmod(folder, 0o777)
    prefix = []
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(folder, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pg_ctl = os.path.join(os.path.dirname(initdb), "pg_ctl")
    try:
        subprocess.run(prefix + [initdb, "-D", data, "-U", "postgres", "--auth=trust"], check=True,
                       capture_output=True, timeout=120)
        subprocess.run(prefix + [pg_ctl, "-D", data, "-w", "-l", os.path.join(folder, "log"), "-o",
                                 f"-k {folder} -p {port} -c listen_addresses=''", "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start here: {e}")
    yield f"postgresql+psycopg2://postgres@/postgres?host={folder}&port={port}"
    subprocess.run(prefix + [pg_ctl, "-D", data, "-m", "fast", "stop"], capture_output=True, timeout=120)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_postgresql_study_without_running_a_trial_twice(tiny_bert, synthetic_folder, tmp_path,
                                                                            postgres_url):
    two_workers(tiny_bert, synthetic_folder, tmp_path, postgres_url)
    assert not (tmp_path / "study" / "study.db").exists()


@pytest.mark.parametrize("space, fragment", [
    ([], "nothing to search"),
    (["--space", "colour=1:2"], "colour is not a setting of train.py"),
    (["--space", "lr"], "expected name=low:high"),
    (["--space", "lr=0:1e-3:log"], "a log range must start above 0"),
    (["--space", "lr=3e-4:1e-5"], "the low end must be below the high end"),
    (["--space", "lr=1e-4"], "one value is not a search"),
    (["--space", "lr=1e-5:1e-3:sqrt"], "takes low:high or low:high:log"),
    (["--space", "epochs=1.5:3"], "--epochs takes whole numbers"),
    (["--space", "dropout=0.1:1.5"], "--dropout 1.5: must be between 0 and 1"),
    (["--space", "pos-weight=none,half"], "--pos-weight half: choose one of none, auto, sqrt"),
    (["--space", "pos_weight=none:sqrt"], "takes choices"),
    (["--space", "output_dir=a,b"], "--output-dir is not searched"),
    (["--space", "device=cpu,cuda"], "--device is not searched"),
    (["--space", "deterministic=true,false"], "is a switch"),
    (["--space", "lr=1e-5:1e-3", "--space", "lr=1e-4:1e-2"], "--space lr: given twice"),
    (["--space", "epochs=0:3", "--features", "encoder"], "--space epochs=0:3: --epochs 0: trains nothing"),
    (["--space", "lr=1e-5:1e-3", "--space-file", "/nonexistent/space.txt"], "--space-file /nonexistent"),
])
def test_a_bad_space_is_one_line_before_any_trial(space, fragment, tmp_path, capsys):
    study_dir = tmp_path / "study"
    expect_error(search.main, ["--study-dir", str(study_dir), *space], capsys, fragment)
    assert not study_dir.exists()
