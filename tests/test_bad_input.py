"""Bad flags, checkpoints and inputs of every CLI: one line naming the flag or file, exit status 2, and the previous
run untouched (bad data files: test_bad_data.py)."""
import json
import os
import shutil

import pytest
import torch

import evaluate
import train
from conftest import epochs_of, expect_error, fingerprint, synthetic_rows, tiny_train_args, train_fails, write_flag_tsv


@pytest.mark.parametrize("flag, value, fragment", [
    ("--batch-size", "0", "--batch-size 0: must be at least 1"),
    ("--lr", "-0.001", "--lr -0.001: must be positive"),
    ("--max-length", "1000", "--max-length 1000: beyond the model's limit of 64"),
    ("--select-metric", "accuracy", "--select-metric accuracy"),
    ("--attention-dropout", "1.5", "--attention-dropout 1.5: must be between 0 and 1"),
])
def test_bad_flag_values(tiny_bert, synthetic_folder, previous_run, capsys, flag, value, fragment):
    train_fails(tiny_bert, synthetic_folder, previous_run, capsys, fragment, flag, value)


def test_unknown_model_alias(synthetic_folder, previous_run, capsys, monkeypatch):
    import data.reading

    monkeypatch.setattr(data.reading, "hub_reachable", lambda: False)
    argv = tiny_train_args("minlm", synthetic_folder, previous_run, "--overwrite")
    line = expect_error(train.main, argv, capsys, "--model minlm")
    assert "not an alias (minilm)" in line


def test_a_finished_run_folder_is_refused_without_overwrite(tiny_bert, synthetic_folder, previous_run, capsys):
    argv = tiny_train_args(tiny_bert, synthetic_folder, previous_run)
    expect_error(train.main, argv, capsys, "holds a run already")


def test_a_truncated_checkpoint(trained_run, tmp_path, capsys):
    content = (trained_run[0] / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(content[: len(content) // 2])
    expect_error(evaluate.main, ["--ckpt", str(tmp_path / "cut.pt")], capsys, "cut.pt: not a readable checkpoint")


def test_a_missing_checkpoint(tmp_path, capsys):
    expect_error(evaluate.main, ["--ckpt", str(tmp_path / "none.pt")], capsys, "none.pt: no such checkpoint")


def other_programs_checkpoint(tmp_path, checkpoint):
    """A dict with weights and a config, as another program might save one."""
    torch.save({"model": {"w": torch.zeros(2)}, "config": {"lr": 1}}, tmp_path / "other.pt")
    return tmp_path / "other.pt"


def edited_checkpoint(tmp_path, checkpoint, **config):
    state = torch.load(checkpoint, weights_only=True)
    state["config"].update(config)
    torch.save(state, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


def edited_state(tmp_path, checkpoint, edit):
    """The checkpoint with `edit(state)` applied, as a program other than this one might leave it."""
    state = torch.load(checkpoint, weights_only=True)
    edit(state)
    torch.save(state, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


def nan_weight(state):
    next(v for v in state["model"].values() if v.is_floating_point())[0] = float("nan")


def test_the_weights_check_finds_a_value_in_any_part_of_a_tensor():
    from engine.checkpoint import all_finite  # checks a part at a time: a fused head's GiB at once doubled the peak

    weights = torch.zeros(10, 7)
    assert all_finite(weights, part=4)
    weights[9, 6] = float("inf")
    assert not all_finite(weights, part=4) and not all_finite(weights.t(), part=4)
    weights[9, 6], weights[3, 2] = 0.0, float("nan")
    assert not all_finite(weights, part=4)


def tokenizer_without_a_limit(tmp_path, tiny_bert) -> str:
    """The tiny BERT whose tokenizer declares no model_max_length (its encoder has 64 positions)."""
    folder = tmp_path / "no-limit"
    shutil.copytree(tiny_bert, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("model_max_length", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return str(folder)


def with_model(flags, model):
    return [*flags[:flags.index("--model")], "--model", model, *flags[flags.index("--model") + 2:]]


def damaged_gzip(tmp_path) -> str:
    """A .jsonl.gz whose compressed data is damaged in the middle, not cut short."""
    import gzip
    import random

    rows = synthetic_rows(400, seed=9)
    data = bytearray(gzip.compress("".join(json.dumps({"text": t, "labels": l}) + "\n" for t, l in rows).encode()))
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] = random.Random(i).randrange(256)
    (tmp_path / "damaged.jsonl.gz").write_bytes(bytes(data))
    return str(tmp_path / "damaged.jsonl.gz")


def no_gold_validation(tmp_path) -> str:
    """Training data, and a validation split none of whose examples has a label."""
    folder = tmp_path / "no-gold"
    folder.mkdir()
    write_flag_tsv(folder / "train.tsv", synthetic_rows(120, seed=4))
    write_flag_tsv(folder / "validation.tsv", [(text, []) for text, _ in synthetic_rows(30, seed=5)])
    return str(folder)


def one_file(tmp_path) -> str:
    write_flag_tsv(tmp_path / "all.tsv", synthetic_rows(60, seed=4))
    return str(tmp_path / "all.tsv")


def long_cell_file(tmp_path):
    """Not an error: a 200 KB cell (over csv's default 128 KB field limit)."""
    rows = synthetic_rows(40, seed=5)
    rows[0] = (" ".join(["filler1"] * 40_000), rows[0][1])
    write_flag_tsv(tmp_path / "long.tsv", rows)
    return tmp_path / "long.tsv"


# (script, arguments built from the fixtures, what the one error line must say). `T` stands for the tiny train
# flags into the previous run's folder with --overwrite; `C` for the trained run's best.pt.
BAD_INPUTS = [
    ("train", lambda t, c, x: [*t, "--label-separator", ""], "--label-separator '': must be at least one character"),
    ("train", lambda t, c, x: [*t, "--seed", "-1"], "--seed -1: must be zero or more"),
    ("train", lambda t, c, x: [*t, "--train-on-validation", "--patience", "2"],
     "--train-on-validation: trains for --epochs exactly"),
    ("train", lambda t, c, x: [*t, "--split-seed", "-3"], "--split-seed -3: must be zero or more"),
    ("train", lambda t, c, x: [*t, "--lr", "nan"], "--lr nan: must be a finite number"),
    ("train", lambda t, c, x: [*t, "--warmup", "inf"], "--warmup inf: must be a finite number"),
    ("train", lambda t, c, x: [*t, "--lr", "inf"], "--lr inf: must be a finite number"),
    ("train", lambda t, c, x: [*t, "--device", "cuda:7" if torch.cuda.is_available() else "cuda"], "--device cuda"),
    ("train", lambda t, c, x: [*t, "--device", "tpu"], "--device tpu"),
    ("train", lambda t, c, x: [*t, "--max-length", "1"], "--max-length 1: leaves no room for text"),
    ("train", lambda t, c, x: [*t, "--cache-dir", str(x / "afile")], "--cache-dir"),
    ("train", lambda t, c, x: [*t[:t.index("--output-dir")], "--output-dir", str(x / "afile"),
                               *t[t.index("--output-dir") + 2:]], "is a file, not a folder"),
    ("train", lambda t, c, x: ["--resume", str(x / "nothing" / "last.pt")], "no checkpoint at"),
    ("train", lambda t, c, x: ["--resume", str(other_programs_checkpoint(x, c))], "not a usable checkpoint"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(c), "--max-eval-samples", "0"], "--max-eval-samples 0: must be at least 1"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(c), "--batch-size", "0"], "--batch-size 0: must be at least 1"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(c), "--output", str(x)], "--output"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(c), "--save-predictions", str(x)], "--save-predictions"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(c), "--thresholds", "1.5"], "--thresholds 1.5"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(c), "--device", "cuda:9"], "--device cuda:9"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(other_programs_checkpoint(x, c))], "not a usable checkpoint"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(edited_checkpoint(x, c, attention_impl="flash_attention_9"))],
     "config['attention_impl'] is 'flash_attention_9'"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(edited_checkpoint(x, c, pooling="max"))], "config['pooling'] is 'max'"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(edited_checkpoint(x, c, max_length="300"))], "config['max_length']"),
    ("train", lambda t, c, x: [*t, "--pos-weight-max", "0"], "--pos-weight-max 0.0: must be positive"),
    ("train", lambda t, c, x: [*with_model(t, tokenizer_without_a_limit(x, t[t.index("--model") + 1])),
                               "--max-length", "100"], "--max-length 100: beyond the model's limit of 64"),
    ("train", lambda t, c, x: ["--resume", str(edited_state(x, c, lambda s: s.pop("progress")))],
     "cannot be continued: it holds no training progress"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(c), "--output", str(c)], "would write over"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(c), "--data", str(long_cell_file(x)), "--save-predictions",
                                  str(x / "long.tsv")], "would write over"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(c), "--output", str(x / "same.json"), "--save-predictions",
                                  str(x / "same.json")], "name the same file"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(edited_state(x, c, nan_weight))], "weights hold NaN"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(edited_state(x, c, lambda s: s["thresholds"]["per_label"].__setitem__(
        0, float("nan"))))], "tuned thresholds are not one number from 0 to 1"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(edited_state(x, c, lambda s: s["thresholds"].__setitem__(
        "global", "0.5")))], "tuned thresholds are not one number from 0 to 1"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(edited_checkpoint(x, c, max_length=1000))],
     "max_length 1000 is beyond the encoder's 64 positions"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(edited_state(x, c, lambda s: s.__setitem__("pos_weight",
                                                                                          torch.ones(3))))],
     "its pos_weight does not match its 5 labels"),
    ("predict", lambda t, c, x: ["--ckpt", str(c), "--batch-size", "-1", "text"], "--batch-size -1"),
    ("predict", lambda t, c, x: ["--ckpt", str(c), "--thresholds", "high", "text"], "--thresholds high"),
    ("predict", lambda t, c, x: ["--ckpt", str(c), "--file", str(x / "none.txt")], "none.txt: no such file"),
    ("predict", lambda t, c, x: ["--ckpt", str(c), "--file", str(x)], "is a folder; name a file"),
    ("predict", lambda t, c, x: ["--ckpt", str(c), "--file", damaged_gzip(x)], "gzip-compressed data is damaged"),
    ("train", lambda t, c, x: [*with_data(t, damaged_gzip(x))], "damaged.jsonl.gz: its gzip-compressed data is damaged"),
    ("train", lambda t, c, x: [*with_data(t, one_file(x)), "--val-fraction", "0"],
     "training needs a validation split (found: train); --val-fraction 0.0 carves none from train"),
    ("train", lambda t, c, x: [*with_data(t, no_gold_validation(x)), "--select-metric", "lrap", "--save-every", "1"],
     "--select-metric lrap: cannot be measured on this validation split (30 examples, none with a gold label)"),
    ("evaluate", lambda t, c, x: ["--ckpt", str(c), "--data", one_file(x), "--split", "validation"],
     "--split validation: --data " ),
    ("evaluate", lambda t, c, x: ["--ckpt", str(edited_checkpoint(x, c, long_doc="chunk", stride=500))],
     "stride 500: windows of max_length 32 hold 30 tokens of text; the stride must be smaller"),
]


def with_data(flags, data):
    flags = list(flags)
    flags[flags.index("--data") + 1] = data
    return flags


@pytest.mark.parametrize("case", range(len(BAD_INPUTS)), ids=[f"{s}-{f[:40]}" for s, _, f in BAD_INPUTS])
def test_each_cli_over_bad_inputs(case, tiny_bert, synthetic_folder, trained_run, previous_run, tmp_path, capsys):
    import predict

    script, build, fragment = BAD_INPUTS[case]
    (tmp_path / "afile").write_text("a file, not a folder")
    flags = tiny_train_args(tiny_bert, synthetic_folder, previous_run, "--overwrite")
    argv = build(flags, trained_run[0] / "best.pt", tmp_path)
    checkpoint_before = fingerprint(trained_run[0])
    expect_error({"train": train, "evaluate": evaluate, "predict": predict}[script].main, argv, capsys, fragment)
    assert fingerprint(trained_run[0]) == checkpoint_before


@pytest.mark.slow
def test_a_cell_over_the_csv_field_limit_is_read_whole_and_trains(tiny_bert, tmp_path):
    from data import load_examples

    path = long_cell_file(tmp_path)
    splits, _ = load_examples(str(path), log=lambda *a: None)
    assert sum(len(split) for split in splits.values()) == 40  # no row lost
    assert [len(t.split()) for split in splits.values() for t in split.texts if t.startswith("filler1 filler1")] \
        == [40_000]  # the long cell whole, not cut at the limit
    train.main(tiny_train_args(tiny_bert, str(path), tmp_path / "run", "--epochs", "1"))
    assert epochs_of(tmp_path / "run")[0]["train_examples"] == len(splits["train"])


@pytest.mark.slow
def test_non_utf8_standard_input_of_predict(trained_run):
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), "--ckpt", str(trained_run[0] / "best.pt")],
                          input=b"fine text\n\xff\xfe broken\n", capture_output=True, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err
    assert err.strip().splitlines() == ["error: standard input: line 2: not UTF-8 text (invalid start byte at byte 0)"]


