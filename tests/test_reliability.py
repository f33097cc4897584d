"""Resume after SIGKILL, atomic checkpoints, safe loading, non-finite losses."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import evaluate
import train
from conftest import ROOT, tiny_train_args
from engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def start_training(argv) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *argv], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def read_scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_and_metrics(tiny_bert, synthetic_folder, tmp_path):
    flags = ["--epochs", "8", "--save-every", "3", "--deterministic"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = start_training(tiny_train_args(tiny_bert, synthetic_folder, whole, *flags))
    victim = start_training(tiny_train_args(tiny_bert, synthetic_folder, killed, *flags))
    while not os.path.exists(killed / "last.pt") and victim.poll() is None:
        time.sleep(0.02)
    time.sleep(random.uniform(0.1, 1.0))  # the run goes on about 4 s after its first save here
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert reference.wait() == 0, reference.stderr.read()
    stopped_at = torch.load(killed / "last.pt", weights_only=True)["progress"]
    resumed = start_training(["--resume", "auto", "--output-dir", str(killed)])
    assert resumed.wait() == 0, resumed.stderr.read()

    a, b = (torch.load(folder / "last.pt", weights_only=True) for folder in (whole, killed))
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), f"weights differ (killed at {stopped_at})"
    kept = lambda k: ((k.startswith("val_") and k != "val_seconds")  # noqa: E731
                      or k in ("epoch", "step", "train_loss", "train_examples", "train_tokens"))
    metrics = [[{k: v for k, v in json.loads(line).items() if kept(k)} for line in open(folder / "metrics.jsonl")]
               for folder in (whole, killed)]
    assert len(metrics[0]) == 8 and metrics[0] == metrics[1]
    for tag in ("val/micro_f1", "train/lr"):
        assert read_scalars(whole, tag) == read_scalars(killed, tag), tag
    steps = [s for s, _ in read_scalars(killed, "train/loss")]
    assert steps == sorted(set(steps)) == [s for s, _ in read_scalars(whole, "train/loss")]


SAVER = """
import sys, torch
sys.path.insert(0, {root!r})
from engine.checkpoint import save_checkpoint
for i in range(1000):
    save_checkpoint({path!r}, {{"model": {{"w": torch.full((8_000_000,), float(i))}}, "config": {{"i": i}}}})
"""


@pytest.mark.slow
def test_a_process_killed_while_saving_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(str(path), {"model": {"w": torch.zeros(3)}, "config": {"i": -1}})
    saver = subprocess.Popen([sys.executable, "-c", SAVER.format(root=ROOT, path=str(path))])
    deadline = time.time() + 60
    while not any(name.endswith(".tmp") for name in os.listdir(tmp_path)) and time.time() < deadline:
        time.sleep(0.001)
    saver.send_signal(signal.SIGKILL)
    saver.wait()
    state = torch.load(path, weights_only=True)
    i = state["config"]["i"]
    assert i == -1 or torch.equal(state["model"]["w"], torch.full((8_000_000,), float(i)))


class RunsCode:
    marker = None

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(trained_run, tmp_path, capsys):
    RunsCode.marker = str(tmp_path / "pwned")
    state = torch.load(trained_run[0] / "best.pt", weights_only=True)
    state["config"]["payload"] = RunsCode()
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(str(tmp_path / "evil.pt"))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--ckpt", str(tmp_path / "evil.pt")])
    assert exit_info.value.code == 2
    assert "refused" in capsys.readouterr().err
    assert not os.path.exists(RunsCode.marker)


def test_a_diverging_run_stops_and_never_becomes_best(tiny_bert, synthetic_folder, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(tiny_train_args(tiny_bert, synthetic_folder, out, "--lr", "1e30", "--clip-grad", "0"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip().splitlines()[-1]]
    assert "loss became" in err.strip().splitlines()[-1]
    assert not os.path.exists(out / "best.pt")


@pytest.mark.slow
@pytest.mark.parametrize("started, resumed", [("0", "0.01"), ("0.01", "0")])
def test_a_resumed_run_takes_a_new_weight_decay_for_its_weight_matrices(tiny_bert, synthetic_folder, tmp_path,
                                                                          started, resumed):
    folder = tmp_path / "run"
    train.main(tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "1", "--weight-decay", started))
    train.main(tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "2", "--weight-decay", resumed,
                               "--resume", "auto"))
    last = torch.load(folder / "last.pt", weights_only=True)
    assert last["config"]["resumes"][-1]["changed"]["weight_decay"] == {"from": float(started), "to": float(resumed)}
    groups = last["optimizer"]["param_groups"]
    assert {g["weight_decay"] for g in groups if g["decays"]} == {float(resumed)}
    assert {g["weight_decay"] for g in groups if not g["decays"]} == {0.0}


@pytest.mark.slow
def test_a_checkpoint_saved_at_weight_decay_0_by_the_older_grouping_resumes_at_0(tiny_bert, synthetic_folder,
                                                                                 tmp_path, capsys, monkeypatch):
    """Before 2026-12-04 the groups were keyed by the decay's value: at 0, matrices and the rest shared a group."""
    import engine.training.state
    from conftest import expect_error

    def older_build_optimizer(model, lr, head_lr_mult, weight_decay):
        groups = {}
        for name, param in model.named_parameters():
            if param.requires_grad:
                is_head = name.startswith("head.")
                key = (is_head, weight_decay if param.ndim >= 2 else 0.0)
                groups.setdefault(key, {"params": [], "weight_decay": key[1], "is_head": is_head,
                                        "lr": lr * (head_lr_mult if is_head else 1.0), "decays": param.ndim >= 2})
                groups[key]["params"].append(param)
        return torch.optim.AdamW(list(groups.values()), lr=lr)

    folder = tmp_path / "run"
    flags = tiny_train_args(tiny_bert, synthetic_folder, folder, "--weight-decay", "0", "--features", "encoder")
    with monkeypatch.context() as patched:
        patched.setattr(engine.training.state, "build_optimizer", older_build_optimizer)
        train.main([*flags, "--epochs", "1"])
    assert len(torch.load(folder / "last.pt", weights_only=True)["optimizer"]["param_groups"]) == 2
    expect_error(train.main, [*flags, "--epochs", "2", "--resume", "auto", "--weight-decay", "0.01"], capsys,
                 "resumes at --weight-decay 0 only")
    assert train.main([*flags, "--epochs", "2", "--resume", "auto"])["best_epoch"] >= 1
