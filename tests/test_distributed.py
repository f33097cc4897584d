"""Data parallel on CPU: two processes under torchrun (gloo) train and validate on every example once."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, tiny_train_args


@pytest.mark.slow
def test_two_processes_train_together(tiny_bert, synthetic_folder, tmp_path):
    out = tmp_path / "ddp"
    # --standalone: the rendezvous on a free port of localhost, so that two suites on one machine never collide
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               os.path.join(ROOT, "train.py"), *tiny_train_args(tiny_bert, synthetic_folder, out, "--batch-size", "8")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    epochs = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert len(epochs) == 6 and max(r["val_micro_f1"] for r in epochs) > 0.85
    # 480 training examples in batches of 8 on each of 2 processes: 30 optimizer steps per epoch
    assert epochs[0]["step"] == 30
    state = torch.load(out / "best.pt", weights_only=True)
    assert state["config"]["world_size"] == 2
    assert not any(key.startswith("module.") for key in state["model"])
    # each rank draws its own dropout masks from its own RNG stream, saved for a resume
    ranks = state["rng_per_rank"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])
    assert torch.equal(ranks[0]["torch"], state["rng"]["torch"])
