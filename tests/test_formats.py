"""Checkpoints and exports of every earlier format load, evaluate, predict and export as they did
(tests/fixtures: files the earlier versions wrote); today's carry their format; a newer format is refused in a line."""
import json
import os

import pytest
import torch

import evaluate
import export
import predict
from model.export_format import FORMAT_VERSION
from conftest import ROOT, expect_error, synthetic_rows, write_flag_tsv

FORMAT_1 = os.path.join(ROOT, "tests", "fixtures", "format-1")


def format_1_predictions() -> dict:
    with open(os.path.join(FORMAT_1, "predictions.json")) as f:
        return json.load(f)


def predicted(ckpt: str, texts: list[str], capsys) -> list[dict]:
    records = predict.main(["--ckpt", ckpt, "--json", *texts])
    capsys.readouterr()
    return [r["probabilities"] for r in records]


def largest_difference(a: list[dict], b: list[dict]) -> float:
    return max(abs(x[name] - y[name]) for x, y in zip(a, b) for name in x)


def test_a_format_1_checkpoint_evaluates_as_it_did(tmp_path, capsys):
    write_flag_tsv(tmp_path / "test.tsv", synthetic_rows(120, seed=3))
    result = evaluate.main(["--ckpt", os.path.join(FORMAT_1, "last.pt"), "--data", str(tmp_path / "test.tsv"),
                            "--output", str(tmp_path / "eval.json")])
    with open(os.path.join(FORMAT_1, "expected.json")) as f:
        expected = json.load(f)
    assert result["metrics"]["micro_f1"] == pytest.approx(expected["micro_f1"], abs=1e-6)
    assert result["metrics"]["macro_f1"] == pytest.approx(expected["macro_f1"], abs=1e-6)


@pytest.mark.parametrize("route", ["last.pt", "hf", "onnx"])
def test_a_format_1_checkpoint_and_its_exports_predict_as_they_did(route, capsys):
    then = format_1_predictions()
    now = predicted(os.path.join(FORMAT_1, route), then["texts"], capsys)
    # printed to 6 decimals: the fused head's sparse sum (format 3) may move the last digit of the dense one's
    assert largest_difference(now, then["probabilities"]) <= (2e-6 if route == "last.pt" else 1e-4)


def test_a_format_1_checkpoint_exports_to_todays_format(tmp_path, capsys):
    out = tmp_path / "hf"
    export.main(["--ckpt", os.path.join(FORMAT_1, "last.pt"), "--out", str(out)])
    with open(out / "config.json") as f:
        assert json.load(f)["multi_label"]["format_version"] == FORMAT_VERSION
    then = format_1_predictions()
    assert largest_difference(predicted(str(out), then["texts"], capsys), then["probabilities"]) <= 1e-4


def test_todays_checkpoint_states_its_format_and_loads_without_an_upgrade(trained_run, capsys):
    from engine.checkpoint import load_checkpoint
    from engine.formats import CHECKPOINT_FORMAT

    path = str(trained_run[0] / "best.pt")
    assert torch.load(path, weights_only=True)["format"] == CHECKPOINT_FORMAT
    capsys.readouterr()
    load_checkpoint(path)
    assert "older version" not in capsys.readouterr().err


@pytest.mark.parametrize("found, fragment", [(99, "checkpoint format 99, written by a newer version"),
                                             ("2", "format is '2', not a format number")])
def test_a_checkpoint_of_an_unknown_format_is_refused_in_one_line(trained_run, tmp_path, capsys, found, fragment):
    from engine.checkpoint import save_checkpoint

    state = torch.load(trained_run[0] / "best.pt", weights_only=True)
    state["format"] = found
    save_checkpoint(str(tmp_path / "future.pt"), state)
    expect_error(predict.main, ["--ckpt", str(tmp_path / "future.pt"), "some text"], capsys, fragment)


def test_an_export_of_a_newer_format_is_refused_in_one_line(tmp_path, capsys):
    import shutil

    folder = tmp_path / "hf"
    shutil.copytree(os.path.join(FORMAT_1, "hf"), folder)
    with open(folder / "config.json") as f:
        config = json.load(f)
    config["multi_label"]["format_version"] = 7
    with open(folder / "config.json", "w") as f:
        json.dump(config, f)
    expect_error(predict.main, ["--ckpt", str(folder), "some text"], capsys, "export format 7, written by a newer")
