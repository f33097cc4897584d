"""--compile: the loop trains and validates through torch.compile'd modules, and checkpoints hold the plain
model. Here the graphs run on TorchDynamo's `aot_eager` backend (traced forward and backward, no generated
kernels: seconds instead of minutes on a CPU); the GPU check runs the default backend on CUDA."""
import functools

import pytest
import torch

import evaluate
import train
from conftest import epochs_of, tiny_train_args


@pytest.mark.slow
def test_a_compiled_run_trains_and_its_checkpoint_evaluates_uncompiled(tiny_bert, synthetic_folder, tmp_path,
                                                                      monkeypatch):
    compiled, compile_for_real = [], functools.partial(torch.compile, backend="aot_eager")

    def compile_on_aot_eager(module, mode=None, **kwargs):
        compiled.append((module, mode))
        return compile_for_real(module, **kwargs)  # the mode's CUDA graphs need a GPU (tests/test_cuda.py)

    monkeypatch.setattr(torch, "compile", compile_on_aot_eager)
    out = tmp_path / "compiled"
    train.main(tiny_train_args(tiny_bert, synthetic_folder, out, "--compile", "on", "--compile-mode", "reduce-overhead",
                               "--epochs", "3"))
    assert len(compiled) == 1 and type(compiled[0][0]).__name__ == "MultiLabelClassifier"
    assert compiled[0][1] == "reduce-overhead"
    epochs = epochs_of(out)
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] and epochs[-1]["val_micro_f1"] > 0.3
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["config"]["compiled"] == "reduce-overhead" and not any("_orig_mod" in key for key in best["model"])
    logged = next(r for r in epochs if r["step"] == best["progress"]["step"])
    result = evaluate.main(["--ckpt", str(out / "best.pt"), "--split", "validation", "--output", str(tmp_path / "m.json")])
    for key in ("micro_f1", "macro_f1", "loss"):  # validation ran compiled; evaluate.py runs the plain model
        assert result["metrics"][key] == pytest.approx(logged[f"val_{key}"], abs=1e-5), key
