"""Metric values against hand-computed cases; threshold tuning; predictions that round-trip."""
import io
import json

import numpy as np
import pytest

import evaluate
import predict
from engine.metrics import f1_scores, multilabel_metrics, per_label_report
from engine.thresholds import choose_thresholds, tune_thresholds

PROBS = np.array([[0.9, 0.2, 0.6, 0.1], [0.1, 0.8, 0.3, 0.2], [0.4, 0.7, 0.55, 0.3]])
GOLD = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]])


def test_metrics_match_hand_computed_values():
    m = multilabel_metrics(PROBS, GOLD, 0.5)
    # at 0.5 the predictions are {a, c}, {b}, {b, c}: 3 true positives, 2 false positives, 1 false negative
    assert m["micro_precision"] == pytest.approx(3 / 5)
    assert m["micro_recall"] == pytest.approx(3 / 4)
    assert m["micro_f1"] == pytest.approx(2 / 3)
    assert m["subset_accuracy"] == pytest.approx(2 / 3)
    assert m["hamming_loss"] == pytest.approx(3 / 12)
    assert m["precision_at_1"] == pytest.approx(2 / 3)  # the top label of the third document (b) is wrong
    assert m["precision_at_3"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    assert m["mean_r_precision"] == pytest.approx((2 / 2 + 1 / 1 + 0 / 1) / 3)  # R-Precision: precision at R = number of gold labels
    assert m["r_precision_at_1"] == pytest.approx(2 / 3)
    assert m["r_precision_at_3"] == pytest.approx((2 / 2 + 1 / 1 + 1 / 1) / 3)  # RP@k: hits over min(k, gold labels)
    assert "precision_at_5" not in m  # only 4 labels
    assert m["labels_without_positives"] == 1  # d
    # ROC-AUC over the labels with positives and negatives (a, b, c): each ranks its positives first (macro 1);
    # pooled, 17 of the 20 (positive, negative) pairs are in order: 0.6 < 0.7, and 0.4 < 0.7 and 0.55
    assert m["roc_auc_macro"] == pytest.approx(1.0)
    assert m["roc_auc_micro"] == pytest.approx(17 / 20)
    rows = per_label_report(PROBS, GOLD, 0.5, ["a", "b", "c", "d"])
    assert [r["label"] for r in rows][:1] == ["a"] and rows[-1] == {
        "label": "d", "support": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "threshold": 0.5}


def test_per_label_thresholds_fix_a_label_whose_probabilities_stay_low():
    rng = np.random.default_rng(0)
    gold = (rng.random((400, 3)) < 0.4).astype(int)
    probs = np.where(gold == 1, rng.uniform(0.6, 1.0, gold.shape), rng.uniform(0.0, 0.45, gold.shape))
    probs[:, 2] = np.where(gold[:, 2] == 1, rng.uniform(0.25, 0.45, 400), rng.uniform(0.0, 0.2, 400))
    tuned = tune_thresholds(probs, gold)
    at_half = multilabel_metrics(probs, gold, 0.5)["micro_f1"]
    at_global = multilabel_metrics(probs, gold, tuned["global"])["micro_f1"]
    per_label = multilabel_metrics(probs, gold, tuned["per_label"])["micro_f1"]
    assert per_label == pytest.approx(1.0) and per_label >= at_global >= at_half and at_half < 0.9
    assert 0.2 < tuned["per_label"][2] <= 0.25


def test_a_label_too_rare_to_tune_keeps_the_global_threshold():
    gold = np.zeros((50, 2), dtype=int)
    gold[:25, 0] = 1
    gold[0, 1] = 1
    probs = np.where(gold == 1, 0.7, 0.2).astype(float)
    tuned = tune_thresholds(probs, gold, min_positives=5)
    assert tuned["per_label"][1] == tuned["global"]


def test_labels_too_rare_to_tune_alone_can_share_a_threshold_tuned_on_all_of_them():
    """Three labels with 2 positives each, whose probabilities sit at 0.3 (rare labels' do): the global
    threshold, set by the frequent label, misses them; one threshold tuned on their pooled pairs finds them."""
    gold = np.zeros((60, 4), dtype=int)
    gold[:30, 0] = 1
    for j in (1, 2, 3):
        gold[2 * j:2 * j + 2, j] = 1
    probs = np.where(gold == 1, 0.8, 0.45).astype(float)  # the frequent label's negatives reach 0.45
    probs[:, 1:] = np.where(gold[:, 1:] == 1, 0.3, 0.1)
    alone = tune_thresholds(probs, gold, min_positives=5, fallback="global")
    pooled = tune_thresholds(probs, gold, min_positives=5)
    assert alone["per_label"][1:] == [alone["global"]] * 3 and alone["global"] > 0.45
    assert pooled["per_label"][0] == alone["per_label"][0] and all(0.1 < t <= 0.3 for t in pooled["per_label"][1:])
    assert multilabel_metrics(probs, gold, pooled["per_label"])["macro_f1"] == pytest.approx(1.0)
    assert multilabel_metrics(probs, gold, alone["per_label"])["macro_f1"] == pytest.approx(0.25)
    one_positive = gold.copy()
    one_positive[3:, 1:] = 0  # one positive among them: too few even pooled, so the global threshold stands
    few = tune_thresholds(probs, one_positive, min_positives=5)
    assert few["per_label"][1:] == [few["global"]] * 3


def test_threshold_choice_flags():
    tuned = {"global": 0.3, "per_label": [0.2, 0.4]}
    assert choose_thresholds("tuned", tuned, 0.5) == [0.2, 0.4]
    assert choose_thresholds("global", tuned, 0.5) == 0.3
    assert choose_thresholds("0.7", tuned, 0.5) == 0.7
    assert choose_thresholds(None, tuned, 0.5) == 0.5
    with pytest.raises(ValueError, match="--thresholds"):
        choose_thresholds("high", tuned, 0.5)


def test_tuned_thresholds_are_stored_and_used(trained_run):
    out, _, epochs = trained_run
    import torch

    best = torch.load(out / "best.pt", weights_only=True)
    assert len(best["thresholds"]["per_label"]) == 5
    logged = next(r for r in epochs if r["step"] == best["progress"]["step"])
    result = evaluate.main(["--ckpt", str(out / "best.pt"), "--split", "validation", "--thresholds", "tuned",
                            "--output", str(out / "tuned.json")])
    assert result["metrics"]["micro_f1"] == pytest.approx(logged["val_tuned_micro_f1"])
    assert result["metrics"]["micro_f1"] >= logged["val_micro_f1"]


def test_predictions_round_trip_between_evaluate_and_predict(trained_run, synthetic_folder, tmp_path, capsys,
                                                             monkeypatch):
    out = trained_run[0]
    test_file = f"{synthetic_folder}/test.tsv"
    evaluate.main(["--ckpt", str(out / "best.pt"), "--data", test_file, "--thresholds", "0.5",
                   "--output", str(tmp_path / "m.json"), "--save-predictions", str(tmp_path / "p.jsonl")])
    saved = [json.loads(line) for line in open(tmp_path / "p.jsonl")]
    assert len(saved) == 120 and saved[0]["id"] == "ex0" and set(saved[0]) == {"id", "gold", "predicted", "probabilities"}
    capsys.readouterr()
    predict.main(["--ckpt", str(out / "best.pt"), "--file", test_file, "--json", "--thresholds", "0.5"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["predicted"], r["probabilities"]) for r in printed] == \
           [(r["id"], r["predicted"], r["probabilities"]) for r in saved]
    gold_right = sum(r["predicted"] == r["gold"] for r in saved)
    assert gold_right > 90

    first_text = open(test_file).read().splitlines()[1].split("\t")[1]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO((first_text + "\n\n" + first_text + "\n").encode())))
    from_stdin = predict.main(["--ckpt", str(out / "best.pt"), "--thresholds", "0.5"])
    assert len(from_stdin) == 2 and from_stdin[0]["predicted"] == saved[0]["predicted"]
    assert from_stdin[0]["probabilities"] == pytest.approx(saved[0]["probabilities"], abs=1e-5)
    human = capsys.readouterr().out
    assert first_text[:40] in human


@pytest.mark.slow
def test_thousands_of_labels_give_a_bounded_report_and_thresholds_in_one_pass():
    """With labels by the thousand the console report stays a screen, metrics.jsonl a line, and tuning fast."""
    import time

    from engine.serving.evaluate import REPORT_ROWS, format_report

    rng = np.random.default_rng(0)
    n, labels = 400, 1200
    gold = (rng.random((n, labels)) < rng.random(labels) * 0.01).astype(np.float32)
    probs = np.clip(gold * 0.5 + rng.random((n, labels)) * 0.5, 0, 1).astype(np.float32)
    names = [f"descriptor {j}" for j in range(labels)]
    start = time.perf_counter()
    tuned = tune_thresholds(probs, gold)
    assert time.perf_counter() - start < 60  # the former per-label loop was quadratic in the labels
    assert f1_scores(probs, gold, tuned["per_label"])["micro_f1"] >= f1_scores(probs, gold, tuned["global"])["micro_f1"]
    metrics = multilabel_metrics(probs, gold, 0.5)
    absent = int((gold.sum(0) == 0).sum())
    assert metrics["labels_without_positives"] == absent > 10
    assert len(json.dumps(metrics)) < 2000
    report = format_report(metrics, per_label_report(probs, gold, 0.5, names), "validation", n).splitlines()
    assert len(report) < REPORT_ROWS + 30
    assert f"({absent} in all)" in next(line for line in report if "without positives" in line)
    assert report[-1].startswith(f"  ... {labels - REPORT_ROWS} less frequent labels")
