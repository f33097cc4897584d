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
    assert len(state["tfidf"]["terms"]) + 1 == len(state["model"]["fused.tfidf_offsets"])
    kept = len(state["model"]["fused.tfidf_weights"])  # pruned at |w| >= 0.01 and stored sparse
    assert 0 < kept < len(state["tfidf"]["terms"]) * len(state["label_names"])
    assert state["model"]["fused.tfidf_weights"].abs().min() >= 0.01
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


def test_a_fused_run_without_liblinear_is_refused_before_it_reads_anything(tiny_bert, tmp_path, capsys,
                                                                            monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "liblinear" else
                        find_spec(name, *a))
    expect_error(train.main, tiny_train_args(tiny_bert, str(tmp_path / "no-such-data"), tmp_path / "run",
                                             "--features", "both"), capsys, "pip install -e '.[fused]'")
    assert not (tmp_path / "run").exists()


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


def test_the_sparse_tfidf_block_scores_as_the_dense_one_in_torch_and_in_numpy():
    """The fused head's TF-IDF block stored sparse (CSR over terms) gives the dense block's scores, padded rows and
    empty rows included, in torch (the checkpoint, the HF folder) and in NumPy (data/tfidf.py, for ONNX); a
    format-2 state dict's dense block becomes that sparse block (engine/formats.py)."""
    from data.tfidf import TfidfWeights
    from model.fused_head import FusedHead, sparse_state

    generator = torch.Generator().manual_seed(0)
    dense = torch.randn(40, 6, generator=generator)
    dense[dense.abs() < 1.0] = 0
    ids = torch.randint(0, 40, (5, 7), generator=generator)
    values = torch.rand(5, 7, generator=generator)
    ids[:, -2:], values[:, -2:] = 0, 0  # padding
    ids[3], values[3] = 0, 0  # an empty text
    ids[4, 1] = ids[4, 0]  # a repeated term is summed
    expected = torch.nn.functional.embedding_bag(ids, dense, per_sample_weights=values, mode="sum")
    state = sparse_state({"fused.tfidf_weight": dense, "fused.bias": torch.zeros(6)})
    assert "fused.tfidf_weight" not in state and len(state["fused.tfidf_weights"]) == int((dense != 0).sum())
    head = FusedHead(40, 8, 6)
    head.load_state_dict({**{k.removeprefix("fused."): v for k, v in state.items()},
                          "embedding_weight": torch.zeros(6, 8), "active": torch.tensor(True)})
    assert torch.allclose(head.tfidf_scores(ids, values), expected, atol=1e-6)
    weights = TfidfWeights(head.tfidf_offsets, head.tfidf_labels, head.tfidf_weights, 6)
    assert np.abs(weights.scores(ids.numpy(), values.numpy()) - expected.numpy()).max() < 1e-6
    with pytest.raises(ValueError, match="CSR"):
        TfidfWeights(head.tfidf_offsets, head.tfidf_labels + 6, head.tfidf_weights, 6)


def test_the_fit_prunes_and_starts_from_the_last_weights_to_the_same_optimum():
    """fit_head keeps the TF-IDF weights of at least --tfidf-prune in size; started from an earlier fit's weights
    (warm_start) it reaches the optimum a fit from zeros does (the problem is convex), to liblinear's tolerance."""
    import scipy.sparse as sp

    from model.fused_head import FusedHead

    features = sp.random(300, 60, density=0.2, format="csr", random_state=1, dtype=np.float64)
    labels = [list(np.flatnonzero(features[row, :3].toarray()[0] > 0)) or [3] for row in range(300)]
    prior = torch.tensor([np.mean([j in row for row in labels]) for j in range(5)], dtype=torch.float32)
    cold = head_fit.fit_head(features, labels, 1.0, prior, 2, 50, 0.05, "primal")
    assert cold[0]["tfidf_weights"].abs().min() >= 0.05 and prior[4] == 0 and cold[2][4] < -5  # label 4: none
    head = FusedHead(50, 9, 5)  # columns: 50 terms, 9 of the embedding, the bias
    head.set_weights(cold[0], torch.from_numpy(cold[1].T), torch.from_numpy(cold[2]))
    warm = head_fit.fit_head(features, labels, 1.0, prior, 1, 50, 0.05, "primal", head_fit.warm_start(head, 1.0))
    assert torch.equal(warm[0]["tfidf_offsets"], cold[0]["tfidf_offsets"])
    # liblinear stops at a gradient 1% of the start's (-e 0.01): both fits are that near the one optimum
    assert (warm[0]["tfidf_weights"] - cold[0]["tfidf_weights"]).abs().max() < 0.02 * cold[0]["tfidf_weights"].abs().max()


def test_the_dual_fit_gives_the_same_weights_in_any_number_of_processes_and_linearsvcs_optimum(monkeypatch):
    """The dual solver's shuffles draw from one seed per process: blocks of labels, each in a process of its own,
    make the weights the same with 1 or 3 processes; they are LinearSVC's (the same objective), to liblinear's
    tolerance."""
    import scipy.sparse as sp
    from sklearn.svm import LinearSVC

    monkeypatch.setattr(head_fit, "BLOCK", 2)
    features = sp.hstack([sp.random(200, 30, density=0.3, format="csr", random_state=2), np.ones((200, 1))],
                         format="csr")
    labels = [[j for j in range(5) if features[row, j] > 0.4] for row in range(200)]
    prior = torch.tensor([np.mean([j in row for row in labels]) for j in range(5)], dtype=torch.float32)
    one, three = (head_fit.fit_head(features, labels, 1.0, prior, jobs, 25, 0.0) for jobs in (1, 3))
    assert all(torch.equal(one[0][k], three[0][k]) for k in one[0]) and np.array_equal(one[1], three[1])
    y = np.array([0 in row for row in labels])
    svm = LinearSVC(C=1.0).fit(features[:, :-1], y)
    dense = np.zeros(25)
    column = one[0]["tfidf_labels"].numpy() == 0
    rows = np.repeat(np.arange(25), np.diff(one[0]["tfidf_offsets"].numpy()))
    dense[rows[column]] = one[0]["tfidf_weights"].numpy()[column]
    assert np.abs(dense - svm.coef_[0][:25]).max() < 0.05 and abs(one[2][0] - svm.intercept_[0]) < 0.05


@pytest.mark.slow
def test_a_frozen_encoders_embeddings_are_cached_and_never_read_for_another_encoder_or_windows(
        tiny_bert, synthetic_folder, tmp_path, capsys):
    """--epochs 0 with --cache-dir: the training documents' embeddings are computed once; a second run (another
    C) reads them and fits the same head as the first from them; another --max-length (other windows) or another
    encoder embeds again."""
    from engine.embedding_cache import embedding_file

    cache = tmp_path / "cache"

    def run(name, *extra):
        args = tiny_train_args(tiny_bert, synthetic_folder, tmp_path / name, "--epochs", "0", "--features", "both")
        train.main(args[:args.index("--cache-dir")] + args[args.index("--cache-dir") + 2:] + ["--cache-dir",
                                                                                              str(cache), *extra])
        return capsys.readouterr().out

    assert "embeddings of" not in run("first")
    assert len(list(cache.glob("embeddings-*.npz"))) == 1
    assert "embeddings of 480 documents read from" in run("again")
    first, again = (load_checkpoint(str(tmp_path / n / "best.pt"))["model"] for n in ("first", "again"))
    assert all(torch.equal(first[k], again[k]) for k in first if k.startswith("fused."))
    assert "embeddings of" not in run("shorter", "--max-length", "24")
    assert len(list(cache.glob("embeddings-*.npz"))) == 2
    from model.classifier import build_model
    from engine.config import make_config

    cfg = make_config(model=tiny_bert, features="both")
    model = build_model({**cfg, "attention_impl": "sdpa"}, 5, tfidf_size=3)
    before = embedding_file(str(cache), "key", model, cfg, "cpu", None)
    with torch.no_grad():
        next(model.encoder.parameters()).view(-1)[0] += 1e-3
    assert embedding_file(str(cache), "key", model, cfg, "cpu", None) != before
    assert embedding_file(str(cache), "other", model, cfg, "cpu", None) != before
