"""What a run folder, a checkpoint and a cache may never do: lose files, rewind a run, save an epoch half, read data
twice or not notice it changed, or end in a traceback; through real train.py, evaluate.py and predict.py processes
where the behaviour lives in a process (signals, a failing disk)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import evaluate
import predict
import train
from conftest import LABELS, ROOT, epochs_of, expect_error, fingerprint, synthetic_rows, tiny_train_args, write_flag_tsv
from data import load_examples
from data.examples import Examples
from data.tokenized import tokenize
from engine.metrics import multilabel_metrics


def cli(*argv, wrapper: str = "", **popen) -> subprocess.CompletedProcess:
    """A CLI in a fresh process; `wrapper` runs before it (to fail a disk, say)."""
    script, args = os.path.join(ROOT, argv[0]), list(map(str, argv[1:]))
    code = f"import runpy, sys; sys.argv = {[script, *args]!r}; sys.path.insert(0, {ROOT!r})\n{wrapper}\n" \
           f"runpy.run_path({script!r}, run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          **popen)


def others_files(folder):
    """What a run folder may hold that this run did not write: evaluations, another run's events, hparams."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval-best-test.json").write_text('{"mine": true}')
    (folder / "events.out.tfevents.1700000000.otherhost.1.0").write_bytes(b"other run")
    (folder / "hparams" / "1700000000.1").mkdir(parents=True)
    (folder / "hparams" / "1700000000.1" / "events.out.tfevents.1").write_bytes(b"other hparams")


@pytest.mark.slow
def test_a_run_removes_only_what_it_wrote(tiny_bert, synthetic_folder, tmp_path, capsys):
    folder = tmp_path / "run"
    others_files(folder)
    before = fingerprint(folder)
    (tmp_path / "bad.tsv").write_text("text\tapple\nsome text\t7\n")
    expect_error(train.main, tiny_train_args(tiny_bert, str(tmp_path / "bad.tsv"), folder), capsys,
                 "label columns hold 0 or 1")
    assert fingerprint(folder) == before
    train.main(tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "1"))
    after = fingerprint(folder)
    assert all(after.get(name) == digest for name, digest in before.items()), "a file the run did not write changed"


def test_resuming_best_pt_of_a_run_that_went_on_is_refused(trained_run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(trained_run[0], folder)
    best = torch.load(folder / "best.pt", weights_only=True)
    if best["progress"]["step"] == torch.load(folder / "last.pt", weights_only=True)["progress"]["step"]:
        best["progress"].update(epoch=1, step=30)  # the fixture's best epoch was its last: make it an earlier one
        os.remove(folder / "best.pt")
        torch.save(best, folder / "best.pt")
    before = fingerprint(folder)
    expect_error(train.main, ["--resume", str(folder / "best.pt")], capsys, "went on past this checkpoint")
    assert fingerprint(folder) == before


SIGTERM_WHILE_SAVING_EPOCH = """
import os, signal, torch
save = torch.save
def save_with_a_signal(state, f, *args, **kwargs):
    if state.get("metrics"):  # the epoch-end save
        os.kill(os.getpid(), signal.SIGTERM)
    return save(state, f, *args, **kwargs)
torch.save = save_with_a_signal
"""


@pytest.mark.slow
def test_sigterm_while_an_epoch_is_saved_waits_for_the_whole_save(tiny_bert, synthetic_folder, tmp_path):
    folder = tmp_path / "run"
    done = cli("train.py", *tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "2"),
               wrapper=SIGTERM_WHILE_SAVING_EPOCH)
    assert done.returncode == 143, done.stderr[-3000:]
    assert "epoch 1 saved whole" in done.stderr and "Traceback" not in done.stderr
    last = torch.load(folder / "last.pt", weights_only=True)
    assert last["metrics"]["micro_f1"] >= 0 and last["thresholds"]["per_label"] and (folder / "best.pt").exists()
    assert [r["epoch"] for r in epochs_of(folder)] == [1]
    assert predict.main(["--ckpt", str(folder / "best.pt"), "--thresholds", "tuned", "appleword1 filler2"])


@pytest.mark.slow
def test_a_disk_that_fills_during_the_first_save_ends_in_one_line_and_the_command_runs_again(
        tiny_bert, synthetic_folder, tmp_path):
    # a real failed write through torch.save's own zip writer: files may not pass 200 kB (the checkpoint is 320 kB)
    limit = "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); " \
            "resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))"
    folder = tmp_path / "run"
    flags = tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "1")
    failed = cli("train.py", *flags, wrapper=limit)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "last.pt" in errors[0] and "the checkpoint could not be written" in errors[0]
    assert not folder.exists() or not [name for name in os.listdir(folder) if name != ".lock"]
    assert train.main(flags)["best_epoch"] == 1


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_a_worker_saves_a_resumable_checkpoint(tiny_bert, synthetic_folder,
                                                                                 tmp_path):
    folder = tmp_path / "run"
    argv = tiny_train_args(tiny_bert, synthetic_folder, folder, "--epochs", "200", "--workers", "1")
    process = subprocess.Popen([sys.executable, "-u", os.path.join(ROOT, "train.py"), *argv], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in process.stdout:
        if line.startswith("epoch 1/"):
            break
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGTERM)  # what a scheduler or a service manager sends: every process of the group
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-3000:]
    assert "Traceback" not in err and "last.pt saved" in err or "saved whole" in err, err[-3000:]
    assert torch.load(folder / "last.pt", weights_only=True)["progress"]["step"] > 0


def test_hidden_copies_are_not_read_and_two_files_for_one_split_are_refused(tmp_path):
    folder = tmp_path / "data"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    write_flag_tsv(folder / "train.tsv", synthetic_rows(30, seed=1))
    write_flag_tsv(folder / ".ipynb_checkpoints" / "train-checkpoint.tsv", synthetic_rows(30, seed=4))
    splits, _ = load_examples(str(folder), val_fraction=0.0, log=lambda *a: None)
    assert len(splits["train"]) == 30
    (folder / "train.jsonl").write_text(json.dumps({"text": "x", "labels": ["apple"]}) + "\n")
    with pytest.raises(Exception, match="2 files for the train split"):
        load_examples(str(folder), val_fraction=0.0, log=lambda *a: None)


def test_one_label_written_three_ways_is_one_label(tmp_path):
    rows = [{"text": "a", "labels": ["Café"]}, {"text": "b", "labels": ["Cafe\u0301"]}, {"text": "c", "labels": ["Café "]},
            {"text": "d", "labels": ["tea"]}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    splits, names = load_examples(str(tmp_path / "d.jsonl"), val_fraction=0.0, log=lambda *a: None)
    assert names == ["Café", "tea"] and splits["train"].labels[:3] == [[0], [0], [0]]


def test_predict_reads_the_text_column_the_run_trained_on(tiny_bert, tmp_path, capsys):
    rows = synthetic_rows(60, seed=1)
    with open(tmp_path / "train.tsv", "w") as f:
        f.write("body\t" + "\t".join(LABELS) + "\n")
        f.writelines(text + "\t" + "\t".join(str(int(label in labels)) for label in LABELS) + "\n"
                     for text, labels in rows)
    train.main(tiny_train_args(tiny_bert, str(tmp_path / "train.tsv"), tmp_path / "run", "--epochs", "1",
                               "--text-column", "body"))
    (tmp_path / "new.tsv").write_text("text\tbody\nnot this column\tappleword1 filler3\n")
    records = predict.main(["--ckpt", str(tmp_path / "run" / "best.pt"), "--file", str(tmp_path / "new.tsv"), "--json"])
    assert records[0]["text"] == "appleword1 filler3"


def test_the_token_cache_knows_added_tokens_and_where_texts_end(tiny_bert, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    texts = Examples.unlabelled(["filler1 newword", "filler2"])
    plain = tokenize(texts, tokenizer, 16, 5, str(tmp_path))
    tokenizer.add_tokens(["newword"])
    added = tokenize(texts, tokenizer, 16, 5, str(tmp_path))
    assert not np.array_equal(plain.token_ids, added.token_ids)
    joined = [tokenize(Examples.unlabelled(t), tokenizer, 16, 5, str(tmp_path)) for t in (["ab", "c"], ["a", "bc"])]
    assert len(os.listdir(tmp_path)) == 4 and len(joined[0].window_lengths) == 2


@pytest.mark.parametrize("damage", [b"", b"garbage, not a zip", "truncated"])
def test_a_torn_cache_file_is_tokenized_again(tiny_bert, tmp_path, damage):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    texts = Examples.unlabelled([text for text, _ in synthetic_rows(20, seed=3)])
    first = tokenize(texts, tokenizer, 16, 5, str(tmp_path))
    (cache_file,) = tmp_path.iterdir()
    content = cache_file.read_bytes()
    cache_file.write_bytes(content[: len(content) // 2] if damage == "truncated" else damage)
    again = tokenize(texts, tokenizer, 16, 5, str(tmp_path))
    assert np.array_equal(first.token_ids, again.token_ids) and cache_file.read_bytes() == content


def test_a_cache_that_cannot_be_written_costs_a_note_not_the_run(tiny_bert, tmp_path, capsys, monkeypatch):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    texts = Examples.unlabelled(["filler1 filler2"])
    (tmp_path / "afile").write_text("")
    tokenize(texts, tokenizer, 16, 5, str(tmp_path / "afile" / "cache"))  # a folder that cannot be made
    monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    tokenize(texts, tokenizer, 16, 5, str(tmp_path / "full"))
    err = capsys.readouterr().err
    assert err.count("note: --cache-dir") == 2 and "No space left on device" in err
    assert os.listdir(tmp_path / "full") == []


def test_changed_data_is_noticed_on_resume_and_by_evaluating_its_validation_split(tiny_bert, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_flag_tsv(data / "train.tsv", synthetic_rows(200, seed=1))
    write_flag_tsv(data / "validation.tsv", synthetic_rows(40, seed=2))
    folder = tmp_path / "run"
    train.main(tiny_train_args(tiny_bert, str(data), folder, "--epochs", "1"))
    write_flag_tsv(data / "validation.tsv", synthetic_rows(40, seed=9))
    expect_error(evaluate.main, ["--ckpt", str(folder / "best.pt"), "--split", "validation"], capsys,
                 "the data changed")
    write_flag_tsv(data / "train.tsv", synthetic_rows(200, seed=8))
    expect_error(train.main, ["--resume", "auto", "--output-dir", str(folder), "--epochs", "2"], capsys,
                 "the data changed")


def test_metrics_files_are_strict_json(trained_run, tmp_path):
    one = tmp_path / "one.tsv"
    write_flag_tsv(one, synthetic_rows(1, seed=5))  # one example: no label has both classes, ROC-AUC is undefined
    result = evaluate.main(["--ckpt", str(trained_run[0] / "best.pt"), "--data", str(one),
                            "--output", str(tmp_path / "m.json")])
    assert result["metrics"]["roc_auc_macro"] != result["metrics"]["roc_auc_macro"]  # NaN in memory
    strict = json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert strict["metrics"]["roc_auc_macro"] is None


@pytest.mark.slow
def test_one_label_and_labels_named_by_unusual_digits_train_and_evaluate(tiny_bert, tmp_path):
    rows = synthetic_rows(80, seed=1)
    with open(tmp_path / "single.tsv", "w") as f:
        f.write("text\tapple\n")
        f.writelines(f"{text}\t{int('apple' in labels)}\n" for text, labels in rows)
    out = tmp_path / "single"
    summary = train.main(tiny_train_args(tiny_bert, str(tmp_path / "single.tsv"), out, "--epochs", "1"))
    result = evaluate.main(["--ckpt", str(out / "best.pt"), "--data", str(tmp_path / "single.tsv"),
                            "--output", str(tmp_path / "m.json")])
    assert summary["best_epoch"] == 1 and 0 <= result["metrics"]["micro_f1"] <= 1
    digits = [{"text": text, "labels": ["²" if "apple" in labels else "1", "١٢"]} for text, labels in rows]
    (tmp_path / "digits.jsonl").write_text("".join(json.dumps(r) + "\n" for r in digits), encoding="utf-8")
    train.main(tiny_train_args(tiny_bert, str(tmp_path / "digits.jsonl"), tmp_path / "digits", "--epochs", "1"))
    assert torch.load(tmp_path / "digits" / "best.pt", weights_only=True)["label_names"] == ["1", "²", "١٢"]


def test_metrics_agree_with_scikit_learn_on_a_multi_label_matrix():
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    targets = (rng.random((50, 7)) < 0.3).astype(np.int64)
    probs = rng.random((50, 7))
    ours = multilabel_metrics(probs, targets, 0.5)
    preds = (probs >= 0.5).astype(np.int64)
    for average in ("micro", "macro", "weighted", "samples"):
        for name, score in (("f1", skm.f1_score), ("precision", skm.precision_score), ("recall", skm.recall_score)):
            assert ours[f"{average}_{name}"] == pytest.approx(score(targets, preds, average=average, zero_division=0))
    assert ours["jaccard_samples"] == pytest.approx(skm.jaccard_score(targets, preds, average="samples",
                                                                      zero_division=0))
    assert ours["hamming_loss"] == pytest.approx(skm.hamming_loss(targets, preds))
    probs[:5, 0] = probs[5:10, 0]  # ties, which count half
    ours = multilabel_metrics(probs, targets, 0.5)
    for average in ("micro", "macro"):
        assert ours[f"roc_auc_{average}"] == pytest.approx(skm.roc_auc_score(targets, probs, average=average))


def test_a_checkpoint_whose_cache_folder_cannot_be_made_here_evaluates(trained_run, tmp_path, capsys):
    state = torch.load(trained_run[0] / "best.pt", weights_only=True)
    state["config"]["cache_dir"] = "/proc/another-machine/cache"  # cannot be created on this one
    torch.save(state, tmp_path / "moved.pt")
    evaluate.main(["--ckpt", str(tmp_path / "moved.pt"), "--split", "validation"])
    assert "note: --cache-dir /proc/another-machine/cache" in capsys.readouterr().err
    evaluate.main(["--ckpt", str(tmp_path / "moved.pt"), "--split", "validation", "--cache-dir", ""])
    assert "note:" not in capsys.readouterr().err
