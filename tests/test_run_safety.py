"""No run is lost or silently wrong: resumes, overwrites, locks and odd inputs, through real train.py and
evaluate.py processes."""
import json
import os
import shutil
import stat

import pytest
import torch

import train
from conftest import LABELS, epochs_of, fingerprint, synthetic_rows, tiny_train_args, write_flag_tsv
from processes import cli, one_error_line


@pytest.fixture(scope="module")
def finished_run(tiny_bert, synthetic_folder, tmp_path_factory):
    """A run of 2 epochs, trained once in a subprocess."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    done = cli("train.py", *tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.fixture
def base_run(finished_run, tiny_bert, synthetic_folder, tmp_path):
    """A copy of the finished run for one test to use up, and the flags that would train it there."""
    folder = tmp_path / "base"
    shutil.copytree(finished_run, folder)
    return folder, tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "2")


@pytest.mark.slow
def test_resuming_a_copy_writes_into_the_copy(base_run, tmp_path):
    base, _ = base_run
    fork = tmp_path / "fork"
    shutil.copytree(base, fork)
    before = fingerprint(base)
    done = cli("train.py", "--resume", fork / "last.pt", "--epochs", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert fingerprint(base) == before
    assert [r["epoch"] for r in epochs_of(fork)] == [1, 2, 3]
    assert json.loads((fork / "config.json").read_text())["output_dir"] == str(fork)


@pytest.mark.slow
def test_an_overwrite_that_fails_after_taking_the_folder_puts_the_old_run_back(base_run):
    """Flags that cannot work (--lr inf, --max-length 1, ...) are refused before the folder is touched
    (test_bad_input.py); this one fails only in training, after the old run was moved aside."""
    base, flags = base_run
    before = fingerprint(base)
    one_error_line(cli("train.py", *flags, "--overwrite", "--lr", "1e30", "--clip-grad", "0"), "loss became")
    assert fingerprint(base) == before


@pytest.mark.slow
def test_select_metric_that_the_labels_cannot_give_is_refused_before_training(tiny_bert, base_run, tmp_path):
    base, _ = base_run
    rows = [(text, [label for label in labels if label in LABELS[:3]]) for text, labels in synthetic_rows(40, 1)]
    (tmp_path / "three.tsv").write_text("text\tapple\tbanana\tcherry\n" + "".join(
        f"{text}\t" + "\t".join(str(int(name in labels)) for name in LABELS[:3]) + "\n" for text, labels in rows))
    before = fingerprint(base)
    done = cli("train.py", *tiny_train_args(tiny_bert, tmp_path / "three.tsv", base, "--overwrite",
                                            "--select-metric", "precision_at_5"))
    one_error_line(done, "--select-metric precision_at_5: needs at least 5 labels, the data has 3")
    assert fingerprint(base) == before


@pytest.mark.slow
def test_a_second_train_py_on_a_busy_folder_gets_one_line(tiny_bert, synthetic_folder, tmp_path):
    from engine.training.run_folder import RunFolder

    folder = tmp_path / "busy"
    holder = RunFolder(str(folder))  # this process holds the folder as a running train.py does
    holder.lock()
    try:
        second = cli("train.py", *tiny_train_args(tiny_bert, synthetic_folder, folder, "--overwrite"))
        one_error_line(second, f"--output-dir {folder}: in use by another train.py (pid {os.getpid()})")
    finally:
        holder.unlock()


@pytest.mark.slow
def test_a_folder_whose_config_json_is_not_a_runs_is_refused(tiny_bert, synthetic_folder, tmp_path):
    model_copy = tmp_path / "model"
    shutil.copytree(tiny_bert, model_copy)
    before = fingerprint(model_copy)
    for extra in ((), ("--overwrite",)):
        done = cli("train.py", *tiny_train_args(tiny_bert, synthetic_folder, model_copy, *extra))
        one_error_line(done, f"--output-dir {model_copy}: its config.json is not a train.py run's (a model folder?)")
        assert fingerprint(model_copy) == before


@pytest.mark.slow
def test_changed_optimization_flags_apply_on_resume_and_are_recorded(base_run):
    base, _ = base_run
    done = cli("train.py", "--resume", "auto", "--output-dir", base, "--epochs", "3", "--lr", "1e-3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resume: --lr 0.003 -> 0.001" in done.stdout
    config = json.loads((base / "config.json").read_text())
    assert config["lr"] == 1e-3 and config["epochs"] == 3
    assert config["resumes"][-1]["changed"]["lr"] == {"from": 3e-3, "to": 1e-3}
    groups = torch.load(base / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert sorted(g["initial_lr"] for g in groups) == [1e-3] * len(groups)  # head lr mult 1 in the tiny flags


def test_flags_that_define_the_run_cannot_change_on_resume(base_run, capsys):
    base, _ = base_run
    before = fingerprint(base)
    for flag, value in (("--model", "minilm"), ("--freeze-embeddings", "all"), ("--batch-size", "4")):
        with pytest.raises(SystemExit) as exit_info:
            train.main(["--resume", "auto", "--output-dir", str(base), flag, value])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {flag} {value}: the run being resumed has") and "Traceback" not in err
    assert fingerprint(base) == before


@pytest.mark.slow
def test_two_columns_of_one_name_are_refused(tiny_bert, tmp_path):
    (tmp_path / "d.tsv").write_text("text\tjoy\tjoy\nsome text\t1\t0\n")
    done = cli("train.py", *tiny_train_args(tiny_bert, tmp_path / "d.tsv", tmp_path / "run"))
    one_error_line(done, "d.tsv: two columns are named 'joy'")
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
def test_evaluating_a_file_without_some_label_columns_is_refused(base_run, tmp_path):
    base, _ = base_run
    (tmp_path / "d.tsv").write_text("text\tapple\tbanana\tcherry\tdate\nsome text\t1\t0\t0\t1\n")
    one_error_line(cli("evaluate.py", "--ckpt", base / "best.pt", "--data", tmp_path / "d.tsv"),
                   "d.tsv: no column for the checkpoint's label(s) elder")


@pytest.mark.slow
def test_relative_paths_are_stored_absolute(tiny_bert, synthetic_folder, tmp_path, monkeypatch):
    import evaluate

    work = tmp_path / "work"
    shutil.copytree(synthetic_folder, work / "data")
    monkeypatch.chdir(work)
    train.main(tiny_train_args(tiny_bert, "data", "run", "--epochs", "1"))
    config = json.loads((work / "run" / "config.json").read_text())
    assert config["data"] == str(work / "data") and config["output_dir"] == str(work / "run")
    monkeypatch.chdir(tmp_path)
    assert evaluate.main(["--ckpt", str(work / "run" / "best.pt"), "--split", "validation"])["examples"] == 120


@pytest.mark.slow
def test_non_finite_weights_are_never_saved(tiny_bert, synthetic_folder, tmp_path):
    folder = tmp_path / "run"
    flags = tiny_train_args(tiny_bert, synthetic_folder, folder, "--lr", "1e30", "--clip-grad", "0",
                            "--save-every", "1", "--log-every", "1000")
    one_error_line(cli("train.py", *flags), "non-finite")
    if os.path.exists(folder / "last.pt"):
        state = torch.load(folder / "last.pt", weights_only=True)
        assert all(torch.isfinite(w).all() for w in state["model"].values())


@pytest.mark.slow
def test_a_torn_metrics_line_does_not_stop_a_resume(base_run):
    base, _ = base_run
    with open(base / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "step": 90, "train_lo')
    done = cli("train.py", "--resume", "auto", "--output-dir", base, "--epochs", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["epoch"] for r in epochs_of(base)] == [1, 2, 3]


@pytest.mark.slow
def test_temporary_files_of_a_killed_save_are_cleaned(base_run):
    base, _ = base_run
    (base / ".last.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    done = cli("train.py", "--resume", "auto", "--output-dir", base, "--epochs", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not [name for name in os.listdir(base) if name.endswith(".tmp")]


@pytest.mark.slow
def test_files_follow_the_umask(tiny_bert, synthetic_folder, tmp_path):
    folder = tmp_path / "run"
    done = cli("train.py", *tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "1"), umask=0o027)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("config.json", "metrics.jsonl", "last.pt"):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o640, name


@pytest.mark.slow
def test_empty_texts_are_kept_and_counted(tiny_bert, tmp_path):
    rows = synthetic_rows(60, seed=1)
    rows[1], rows[7] = ("", rows[1][1]), ("   ", [])
    write_flag_tsv(tmp_path / "d.tsv", rows)
    done = cli("train.py", *tiny_train_args(tiny_bert, tmp_path / "d.tsv", tmp_path / "run", "--epochs", "1"))
    assert done.returncode == 0, done.stderr[-3000:]
    counts = done.stdout.split("empty texts (kept")[1].splitlines()[0].split("): ", 1)[1]
    assert sum(int(part.split()[1]) for part in counts.split(", ")) == 2, counts


def test_an_overwrite_killed_before_its_first_checkpoint_is_undone_at_the_next_start(base_run, capsys):
    """SIGKILL leaves no chance to clean up: the old run sits in .replaced-run beside the new run's first files.
    The next train.py in that folder puts it back before anything else."""
    from engine.training.run_folder import REPLACED, RunFolder

    base, flags = base_run
    before = fingerprint(base)
    folder = RunFolder(str(base))
    folder.replace_run()  # what the killed run had done ...
    (base / "config.json").write_text("{}")  # ... and begun to write
    (base / ".last.pt.x1y2.tmp").write_bytes(b"half")
    assert not (base / "last.pt").exists() and (base / REPLACED).is_dir()
    with pytest.raises(SystemExit):  # a new run that takes the folder, then fails on its tokenizer
        train.main([*flags, "--overwrite", "--max-length", "1"])
    assert "--max-length 1: leaves no room for text" in capsys.readouterr().err
    assert fingerprint(base) == before


def test_a_kill_while_the_old_run_is_moved_aside_or_back_loses_nothing(base_run):
    """Every point where a kill could cut the moves short: the next start finishes or undoes them."""
    from engine.training.run_folder import MOVED, REPLACED, RunFolder

    base, _ = base_run
    before = fingerprint(base)
    names = sorted(name for name in os.listdir(base) if name != "hparams")
    for moved in range(1, len(names)):  # killed after moving `moved` files aside, before the marker
        (base / REPLACED).mkdir()
        for name in names[:moved]:
            os.replace(base / name, base / REPLACED / name)
        folder = RunFolder(str(base))
        folder.lock()
        folder.unlock()
        assert fingerprint(base) == before, moved
    folder = RunFolder(str(base))
    folder.replace_run()
    (base / "config.json").write_text("{}")  # the new run began, failed, and its files were removed ...
    os.remove(base / "config.json")
    os.remove(base / REPLACED / MOVED)  # ... and the old run was on its way back when the kill came
    os.replace(base / REPLACED / "best.pt", base / "best.pt")
    folder.lock()
    folder.unlock()
    assert fingerprint(base) == before
