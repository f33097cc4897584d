"""The fused head (--features both): TF-IDF vectors as scikit-learn computes them, a head fitted over them and the
encoder's embedding, a frozen encoder fitted in one pass, checkpoints and caches that carry the vocabulary, and
checkpoints from before the fused head."""
import json

import numpy as np
import pytest
import torch

import evaluate
import predict
import train
from conftest import epochs_of, expect_error, synthetic_rows, tiny_train_args
from data.examples import Examples
from data.tokenized import tokenize
from data.tfidf import TfidfVocabulary
from engine.training import head_fit
from engine.checkpoint import load_checkpoint
from model.encoders import load_tokenizer

ODD_TEXTS = ["The Council of the EUROPEAN UNION, having regard to Article 43(2) thereof,",
             "Règlement (CEE) n° 1408/71 — the Member States' social-security schemes; article 12a",
             "a b c dd dd dd dd ee ee ff",  # single letters are not words; repeats are counted sublinearly
             "",
             "Ünïcödé wörds, DIGITS 2024 and 2024 again: 3.5% of 12,000 tonnes",
             "dd ee dd ee unseen words only here dd"]


def test_tfidf_vectors_are_scikit_learns():
    """Vocabulary and idf by scikit-learn on the training texts; every text's vector computed here, in plain Python
    (so an exported folder needs only NumPy for it), equals TfidfVectorizer's transform."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    train_texts = [text for text, _ in synthetic_rows(60, seed=4)] + ODD_TEXTS * 2
    vocabulary = TfidfVocabulary.fit(train_texts, max_terms=500)
    reference = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=500,
                                dtype=np.float32).fit(train_texts)
    assert vocabulary.terms == sorted(reference.vocabulary_, key=reference.vocabulary_.get)
    texts = ODD_TEXTS + [text for text, _ in synthetic_rows(10, seed=5)]
    offsets, ids, values = vocabulary.rows(texts)
    ours = np.zeros((len(texts), len(vocabulary)), dtype=np.float32)
    for row in range(len(texts)):
        ours[row, ids[offsets[row]:offsets[row + 1]]] = values[offsets[row]:offsets[row + 1]]
    assert np.abs(ours - reference.transform(texts).toarray()).max() < 1e-6
    padded_ids, padded_values = vocabulary.batch(texts)
    assert padded_ids.shape == padded_values.shape and padded_values[3].sum() == 0  # the empty text: all padding
    again = TfidfVocabulary.from_state(json.loads(json.dumps(vocabulary.state())))
    assert np.array_equal(again.batch(texts)[1], padded_values)


def test_the_vocabulary_is_cut_to_the_weight_budget_at_many_labels(monkeypatch):
    texts = [text for text, _ in synthetic_rows(200, seed=6)]
    assert len(head_fit.fit_vocabulary(texts, 10_000, num_labels=5, log=print)) > 40
    monkeypatch.setattr(head_fit, "WEIGHT_BUDGET_BYTES", 4 * 5 * 30)  # 30 terms x 5 labels x 4 bytes
    lines = []
    cut = head_fit.fit_vocabulary(texts, 10_000, num_labels=5, log=lines.append)
    assert len(cut) == 30 and "at most 30 at 5 labels" in lines[0]


@pytest.mark.slow
def test_a_frozen_encoder_with_a_fused_head_learns_in_one_pass(tiny_bert, synthetic_folder, tmp_path, capsys):
    """--epochs 0: no fine-tuning; the head is fitted over the random encoder's embedding and the TF-IDF vectors,
    which hold the labels' keywords, so it learns the task the encoder alone cannot."""
    out = tmp_path / "frozen"
    train.main(tiny_train_args(tiny_bert, synthetic_folder, out, "--epochs", "0", "--features", "both"))
    [record] = epochs_of(out)
    assert record["val_micro_f1"] > 0.85 and record["val_tuned_micro_f1"] > 0.95
    assert record["val_encoder_micro_f1"] < record["val_micro_f1"] - 0.2
    assert "train_loss" not in record and record["train_fit_seconds"] > 0
    state = load_checkpoint(str(out / "best.pt"))
    assert state["config"]["features"] == "both" and bool(state["model"]["fused.active"])
    assert len(state["tfidf"]["terms"]) == state["model"]["fused.tfidf_weight"].shape[0]
    # the encoder is exactly as pretrained
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_bert).state_dict()
    assert all(torch.equal(state["model"][f"encoder.{k}"], v) for k, v in pretrained.items()
               if f"encoder.{k}" in state["model"])
    capsys.readouterr()
    result = evaluate.main(["--ckpt", str(out / "best.pt"), "--split", "validation", "--output",
                            str(tmp_path / "eval.json")])
    assert result["metrics"]["micro_f1"] == pytest.approx(record["val_micro_f1"], abs=1e-6)
    texts = ["appleword1 filler2 filler3 dateword0", "filler7 filler8"]
    [first, second] = predict.main(["--ckpt", str(out / "best.pt"), "--json", "--thresholds", "0.5", *texts])
    assert first["predicted"] == ["apple", "date"] and second["predicted"] == []


def test_epochs_0_without_the_fused_head_is_refused(tiny_bert, synthetic_folder, tmp_path, capsys):
    expect_error(train.main, tiny_train_args(tiny_bert, synthetic_folder, tmp_path / "run", "--epochs", "0",
                                             "--features", "encoder"), capsys, "--epochs 0: trains nothing")


def test_tfidf_vectors_are_cached_with_the_token_ids_and_keyed_by_the_vocabulary(tiny_bert, tmp_path, monkeypatch):
    texts = [text for text, _ in synthetic_rows(30, seed=8)]
    examples, tokenizer = Examples.unlabelled(texts), load_tokenizer(tiny_bert)
    vocabulary = TfidfVocabulary.fit(texts, 100)
    first = tokenize(examples, tokenizer, 32, 5, str(tmp_path), tfidf=vocabulary)
    computed = []
    monkeypatch.setattr(TfidfVocabulary, "rows", lambda self, t: computed.append(len(t)) or first.tfidf)
    again = tokenize(examples, tokenizer, 32, 5, str(tmp_path), tfidf=vocabulary)
    assert computed == [] and all(np.array_equal(a, b) for a, b in zip(first.tfidf, again.tfidf))
    tokenize(examples, tokenizer, 32, 5, str(tmp_path), tfidf=TfidfVocabulary.fit(texts, 50))
    assert computed == [30]  # another vocabulary: another cache entry


@pytest.fixture(scope="module")
def encoder_and_fused_runs(tiny_bert, synthetic_folder, tmp_path_factory) -> dict:
    """The same 2-epoch run with --features encoder and with --features both."""
    runs = {}
    for features in ("encoder", "both"):
        runs[features] = tmp_path_factory.mktemp(features)
        train.main(tiny_train_args(tiny_bert, synthetic_folder, runs[features], "--epochs", "2", "--features",
                                   features))
    return runs


def test_the_fused_head_leaves_the_encoders_training_as_it_was(encoder_and_fused_runs):
    """Training runs through the encoder's own head whatever --features says, and the fit draws no random numbers:
    a fused run's encoder and its encoder head's validation metrics are those of the same run without it (so one
    fused run measures both)."""
    (encoder, alone), (fused, beside) = ((torch.load(folder / "last.pt", weights_only=True)["model"], epochs_of(folder))
                                         for folder in encoder_and_fused_runs.values())
    assert all(torch.equal(encoder[key], fused[key]) for key in encoder)
    assert [r["val_micro_f1"] for r in alone] == [r["val_encoder_micro_f1"] for r in beside]


def test_a_checkpoint_from_before_the_fused_head_loads_and_evaluates_as_it_ran(encoder_and_fused_runs, tmp_path,
                                                                               capsys):
    out = encoder_and_fused_runs["encoder"]
    state = torch.load(out / "best.pt", weights_only=True)
    assert not any(key.startswith("fused.") for key in state["model"]) and state["tfidf"] is None
    del state["format"], state["tfidf"]  # as format 1 wrote it, before the fused head
    for name in ("features", "tfidf_terms", "embedding_scale", "svm_c"):
        del state["config"][name]
    torch.save(state, tmp_path / "old.pt")
    capsys.readouterr()
    result = evaluate.main(["--ckpt", str(tmp_path / "old.pt"), "--split", "validation", "--output",
                            str(tmp_path / "eval.json")])
    assert "features='encoder'" in capsys.readouterr().err
    best = max(epochs_of(out), key=lambda r: r["val_micro_f1"])
    assert result["metrics"]["micro_f1"] == pytest.approx(best["val_micro_f1"], abs=1e-6)


@pytest.mark.slow
def test_auto_predicts_with_whichever_head_validated_better(tiny_bert, synthetic_folder, tmp_path, capsys):
    """--features auto (the default): after each epoch both heads are scored on validation, and the one with the
    better --select-metric is the one the checkpoint predicts with, in evaluate.py and in an export."""
    out = tmp_path / "auto"
    train.main(tiny_train_args(tiny_bert, synthetic_folder, out, "--epochs", "2"))
    for record in epochs_of(out):
        other = "fused" if record["val_fused_head"] == 0 else "encoder"
        assert record["val_micro_f1"] >= record[f"val_{other}_micro_f1"]
    best = max(epochs_of(out), key=lambda r: r["val_micro_f1"])
    state = load_checkpoint(str(out / "best.pt"))
    assert state["config"]["features"] == "auto" and bool(state["model"]["fused.active"]) == bool(best["val_fused_head"])
    capsys.readouterr()
    result = evaluate.main(["--ckpt", str(out / "best.pt"), "--split", "validation", "--output",
                            str(tmp_path / "eval.json")])
    assert result["metrics"]["micro_f1"] == pytest.approx(best["val_micro_f1"], abs=1e-6)
    # a checkpoint whose encoder head predicts exports as the encoder model it is, without TF-IDF inputs
    state["model"]["fused.active"] = torch.tensor(False)
    torch.save({**torch.load(out / "best.pt", weights_only=True), "model": state["model"]}, tmp_path / "encoder.pt")
    import export

    export.main(["--ckpt", str(tmp_path / "encoder.pt"), "--out", str(tmp_path / "hf")])
    exported = json.load(open(tmp_path / "hf" / "config.json"))
    assert exported["multi_label"]["config"]["features"] == "encoder" and not (tmp_path / "hf" / "tfidf.json").exists()
