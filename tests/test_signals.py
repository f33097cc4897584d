"""Ctrl-C and SIGTERM at each point of a run: a resumable last.pt where a step or an epoch is whole, nothing left
behind before the first checkpoint, and the exit status of the signal."""
import os
import signal
import time

import pytest
import torch

import train
from conftest import epochs_of, tiny_train_args
from processes import cli, start, wait_for_line

@pytest.mark.slow
def test_ctrl_c_saves_a_resumable_checkpoint_and_exits_130(tiny_bert, synthetic_folder, tmp_path):
    """(SIGTERM takes the same path and exits 143: test_3.)"""
    signum = signal.SIGINT
    folder = tmp_path / "run"
    process = start("train.py", *tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "300"))
    wait_for_line(process, "device ")
    time.sleep(0.5)
    process.send_signal(signum)
    err = process.stderr.read()
    assert process.wait(60) == 128 + signum, err[-3000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name  # in a training step, or (on a busy machine) while an epoch was saved
    assert last.startswith((f"interrupted by {name}: last.pt saved at epoch", f"interrupted by {name}: epoch ")), \
        err[-2000:]
    stopped = torch.load(folder / "last.pt", weights_only=True)["progress"]
    resumed = cli("train.py", "--resume", "auto", "--output-dir", folder, "--epochs", str(stopped["epoch"] + 1))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert epochs_of(folder)[-1]["epoch"] == stopped["epoch"] + 1


def interrupt_in(monkeypatch, name):
    """engine.training.trainer.<name> first sends this process a SIGINT (as Ctrl-C would, at that point of the run)."""
    import engine.training.trainer

    real = getattr(engine.training.trainer, name)

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.training.trainer, name, interrupted)


@pytest.mark.slow
def test_a_signal_before_the_first_checkpoint_leaves_a_folder_that_runs_again(tiny_bert, synthetic_folder, tmp_path,
                                                                                capsys, monkeypatch):
    folder = tmp_path / "run"
    flags = tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "1")
    interrupt_in(monkeypatch, "build_train_state")
    with pytest.raises(SystemExit) as exit_info:
        train.main(flags)
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == ("interrupted by SIGINT: before the first checkpoint; nothing was saved "
                                            "and the run folder is as it was")
    assert not os.path.exists(folder)
    monkeypatch.undo()
    assert train.main(flags)["best_epoch"] == 1


@pytest.mark.slow
def test_ctrl_c_during_validation_saves_the_trained_epoch(tiny_bert, synthetic_folder, trained_run, tmp_path,
                                                            capsys, monkeypatch):
    """Stopped in validation, the epoch's training is kept; the resumed run validates it again and ends where an
    uninterrupted run does."""
    folder = tmp_path / "run"
    interrupt_in(monkeypatch, "validate")
    with pytest.raises(SystemExit) as exit_info:
        train.main(tiny_train_args(tiny_bert, synthetic_folder, folder))
    assert exit_info.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        "interrupted by SIGINT: last.pt saved at epoch 1, batch 30 (step 30); continue with: python train.py "
        f"--resume auto --output-dir {folder}")
    monkeypatch.undo()
    train.main(["--resume", "auto", "--output-dir", str(folder)])
    resumed, whole = epochs_of(folder), trained_run[2]
    assert [r["val_micro_f1"] for r in resumed] == [r["val_micro_f1"] for r in whole]
    assert [r["val_loss"] for r in resumed] == [r["val_loss"] for r in whole]
