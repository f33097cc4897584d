"""The CUDA paths, on a real GPU: autocast in bf16 and fp16 (with its GradScaler), pinned memory and non-blocking
copies, SDPA on CUDA, the CUDA RNG state in a kill-and-resume, and checkpoints that move between CUDA and CPU.
Skipped, with the reason, where CUDA is absent; `bash bench/gpu_check.sh OUT` runs them on a GPU machine."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import evaluate
import train
from conftest import ROOT, epochs_of, tiny_train_args

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")]


def cuda_args(tiny_bert, data, out, *extra):
    """Eager (`--compile off`) unless `extra` says: most tests here check the eager CUDA paths; the compiled
    default has tests of its own."""
    return tiny_train_args(tiny_bert, data, out, "--device", "cuda", "--compile", "off", *extra)


def run_killed_and_resumed(args: list[str], folder) -> None:
    """train.py with `args` in a subprocess, SIGKILLed once its first last.pt is written, then resumed to its end."""
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    script = os.path.join(ROOT, "train.py")
    victim = subprocess.Popen([sys.executable, script, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    while not os.path.exists(folder / "last.pt") and victim.poll() is None:
        time.sleep(0.01)
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = subprocess.run([sys.executable, script, "--resume", "auto", "--output-dir", str(folder)], cwd=ROOT,
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_training_under_autocast_on_cuda(tiny_bert, synthetic_folder, tmp_path, amp):
    out = tmp_path / amp
    summary = train.main(cuda_args(tiny_bert, synthetic_folder, out, "--amp", amp))
    epochs = epochs_of(out)
    assert all(r["train_loss"] == r["train_loss"] for r in epochs)  # no NaN
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] and summary["best_metric"] > 0.8
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["config"]["amp_dtype"] == amp and state["config"]["device"].startswith("cuda")
    if amp == "fp16":  # the scaler ran: it holds a scale, and the optimizer took steps through it
        assert state["scaler"]["scale"] > 0 and state["scaler"]["_growth_tracker"] >= 0
    steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
    assert max(steps) > 0


def test_a_run_killed_on_cuda_resumes_to_the_same_weights(tiny_bert, synthetic_folder, tmp_path):
    """With --deterministic (cuBLAS in its deterministic workspace mode, deterministic kernels only), a SIGKILLed
    and resumed run should end bitwise where an uninterrupted one does; any difference is reported with its
    size (CUDA kernels that have no deterministic form would show up here)."""
    flags = ["--epochs", "6", "--save-every", "3", "--deterministic", "--amp", "bf16"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    script = os.path.join(ROOT, "train.py")
    reference = subprocess.Popen([sys.executable, script, *cuda_args(tiny_bert, synthetic_folder, whole, *flags)],
                                 cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert reference.wait() == 0, reference.stderr.read()
    run_killed_and_resumed(cuda_args(tiny_bert, synthetic_folder, killed, *flags), killed)
    a, b = (torch.load(folder / "last.pt", weights_only=True) for folder in (whole, killed))
    differences = {k: (a["model"][k].float() - b["model"][k].float()).abs().max().item() for k in a["model"]}
    assert max(differences.values()) == 0.0, {k: v for k, v in differences.items() if v}
    assert [r["val_micro_f1"] for r in epochs_of(whole)] == [r["val_micro_f1"] for r in epochs_of(killed)]


@pytest.fixture(scope="module")
def cuda_run(tiny_bert, synthetic_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("cuda-run")
    train.main(cuda_args(tiny_bert, synthetic_folder, out, "--amp", "bf16"))
    return out


def test_evaluate_on_cuda_reproduces_the_logged_validation_metrics(cuda_run, tmp_path):
    best = torch.load(cuda_run / "best.pt", weights_only=True)
    logged = next(r for r in epochs_of(cuda_run) if r["step"] == best["progress"]["step"])
    result = evaluate.main(["--ckpt", str(cuda_run / "best.pt"), "--split", "validation", "--device", "cuda",
                            "--output", str(tmp_path / "m.json")])
    for key in ("micro_f1", "macro_f1", "loss", "roc_auc_micro"):
        assert result["metrics"][key] == pytest.approx(logged[f"val_{key}"], abs=1e-6), key


def test_checkpoints_move_between_cuda_and_cpu(cuda_run, trained_run, tmp_path):
    """A CUDA-trained checkpoint evaluates on a CPU, and a CPU-trained one on CUDA, to the same F1 (other
    kernels: probabilities agree to bf16 precision, so F1 may move by an example near the threshold)."""
    for folder in (cuda_run, trained_run[0]):
        on = {device: evaluate.main(["--ckpt", str(folder / "best.pt"), "--split", "validation", "--device", device,
                                     "--amp", "off", "--output", str(tmp_path / f"{device}.json")])["metrics"]
              for device in ("cuda", "cpu")}
        assert on["cuda"]["micro_f1"] == pytest.approx(on["cpu"]["micro_f1"], abs=0.02), folder
        assert on["cuda"]["loss"] == pytest.approx(on["cpu"]["loss"], rel=1e-3), folder


@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_mpnet_on_sdpa_matches_its_eager_attention_on_cuda(amp_dtype):
    """SDPA's CUDA kernels take MPNet's relative-position bias as a float mask and give it its gradient."""
    from test_encoders import mpnet_against_eager

    output_diff, grad_diff, bias_grad = mpnet_against_eager("sdpa", "cuda", amp_dtype)
    tolerance = 1e-4 if amp_dtype is None else 5e-2  # bf16 keeps 8 bits of mantissa
    assert output_diff < tolerance and grad_diff < tolerance and bias_grad > 1e-3


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_a_compiled_run_on_cuda_learns_and_its_checkpoint_evaluates_uncompiled(tiny_bert, synthetic_folder, tmp_path,
                                                                               mode):
    """--compile with the default backend (Inductor's generated CUDA kernels), in bf16, and in the mode that
    replays CUDA graphs: it learns the task, the checkpoint holds the plain model, and evaluate.py (uncompiled)
    agrees with the compiled validation to bf16 precision (fused kernels round differently)."""
    out = tmp_path / "compiled"
    summary = train.main(cuda_args(tiny_bert, synthetic_folder, out, "--amp", "bf16", "--compile", "on",
                                   "--compile-mode", mode))
    best = torch.load(out / "best.pt", weights_only=True)
    assert summary["best_metric"] > 0.8 and not any("_orig_mod" in key for key in best["model"])
    logged = next(r for r in epochs_of(out) if r["step"] == best["progress"]["step"])
    result = evaluate.main(["--ckpt", str(out / "best.pt"), "--split", "validation", "--device", "cuda",
                            "--output", str(tmp_path / "m.json")])
    assert result["metrics"]["micro_f1"] == pytest.approx(logged["val_micro_f1"], abs=0.02)
    assert result["metrics"]["loss"] == pytest.approx(logged["val_loss"], rel=1e-2)


def test_the_default_compiles_on_cuda_and_its_runs_resume_and_evaluate_as_eager_ones_do(tiny_bert, synthetic_folder,
                                                                                       tmp_path):
    """--compile auto on a GPU: CUDA graphs (reduce-overhead), lengths padded to buckets of 16 tokens. The run
    learns as the eager one does, a killed and resumed run ends where an uninterrupted one does (to bf16
    precision: graphs are not bitwise across a restart), and evaluate.py (compiled as well) and evaluate.py on the
    CPU reproduce the logged validation metrics."""
    flags = ["--epochs", "6", "--save-every", "3", "--amp", "bf16"]

    def default(out):
        return tiny_train_args(tiny_bert, synthetic_folder, out, "--device", "cuda", *flags)

    whole, killed, eager = tmp_path / "whole", tmp_path / "killed", tmp_path / "eager"
    train.main(default(whole))
    train.main(cuda_args(tiny_bert, synthetic_folder, eager, *flags))
    best = torch.load(whole / "best.pt", weights_only=True)
    assert best["config"]["compile"] == "auto" and best["config"]["compiled"] == "reduce-overhead"
    compiled_run, eager_run = epochs_of(whole)[-1], epochs_of(eager)[-1]
    assert compiled_run["val_micro_f1"] == pytest.approx(eager_run["val_micro_f1"], abs=0.03)
    assert compiled_run["val_loss"] == pytest.approx(eager_run["val_loss"], rel=5e-2)
    run_killed_and_resumed(default(killed), killed)
    assert epochs_of(killed)[-1]["val_micro_f1"] == pytest.approx(compiled_run["val_micro_f1"], abs=0.02)
    logged = next(r for r in epochs_of(whole) if r["step"] == best["progress"]["step"])
    for device in ("cuda", "cpu"):
        result = evaluate.main(["--ckpt", str(whole / "best.pt"), "--split", "validation", "--device", device,
                                "--output", str(tmp_path / f"{device}.json")])
        assert result["metrics"]["micro_f1"] == pytest.approx(logged["val_micro_f1"], abs=0.02), device
        assert result["metrics"]["loss"] == pytest.approx(logged["val_loss"], rel=1e-2), device
