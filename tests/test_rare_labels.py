"""Rare labels: the losses made for long tails, the head's bias at the label priors, early stopping, and a label
learned from 5 examples."""
import json
import random

import pytest
import torch
import torch.nn.functional as F

import evaluate
import train
from conftest import FILLER, KEYWORDS, LABELS, epochs_of, tiny_train_args, write_flag_tsv
from engine.losses import (DistributionBalancedLoss, FocalLoss, build_loss, label_pos_weight, label_prior,
                           log_odds)


def test_focal_loss_without_focusing_is_binary_cross_entropy_and_focusing_spares_easy_pairs():
    logits = torch.tensor([[4.0, -4.0, 0.3], [-0.2, 3.0, -5.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    weight = torch.tensor([2.0, 1.0, 3.0])
    assert FocalLoss(0, 0, 0, weight)(logits, targets) == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight).item(), rel=1e-6)
    easy, hard = torch.tensor([[-5.0]]), torch.tensor([[2.0]])
    negative = torch.zeros(1, 1)
    asl = build_loss({"loss": "asl"})
    assert asl(easy, negative) == 0  # a negative below the 0.05 margin costs nothing
    assert asl(hard, negative) > 0
    focal, bce = build_loss({"loss": "focal"}), build_loss({"loss": "bce"})
    assert focal(easy, negative) / bce(easy, negative) < 1e-3 < focal(hard, negative) / bce(hard, negative)


def test_the_distribution_balanced_loss_weighs_a_frequent_label_down_beside_a_rare_one_and_tolerates_negatives():
    db = build_loss({"loss": "db"}, prior=torch.tensor([0.5, 0.01]))
    alone, beside_rare = db.rebalanced_weights(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    # alone, the frequent label is sampled as often as its document: r = 1
    assert alone[0] == pytest.approx(0.1 + torch.sigmoid(torch.tensor(10 * (1 - 0.9))).item())
    # beside the rare label, its document is drawn 51x as often as the frequent label alone would draw it
    assert beside_rare[0] == pytest.approx(0.1 + torch.sigmoid(torch.tensor(10 * (2 / 102 - 0.9))).item())
    assert beside_rare[0] < 0.11 < 0.7 < beside_rare[1]
    # an easy negative of a rare label costs far less than under BCE; a missed positive costs about as much
    rare = build_loss({"loss": "db"}, prior=torch.tensor([0.01]))
    plain = DistributionBalancedLoss(torch.tensor([0.01]), kappa=0.0, neg_scale=1.0, gamma=0.0, alpha=1.0,
                                     beta=0.0)  # weight 1.5 everywhere, no shift, no focus: 0.75 x BCE
    logit, negative, positive = torch.tensor([[-3.0]]), torch.zeros(1, 1), torch.ones(1, 1)
    bce = F.binary_cross_entropy_with_logits
    assert plain(logit, negative) == pytest.approx(0.75 * bce(logit, negative).item(), rel=1e-6)
    assert rare(logit, negative) < 0.01 * bce(logit, negative)
    assert rare(logit, positive) > 0.3 * bce(logit, positive)
    with pytest.raises(ValueError, match="priors"):
        build_loss({"loss": "db"})


def test_positive_weights_and_priors_come_from_the_training_labels():
    labels = [[0], [0, 1], [], [0]]
    assert label_pos_weight(labels, 3, "auto", 10).tolist() == pytest.approx([1 / 3, 3.0, 4.0])  # none: 4 / 1, capped
    assert label_pos_weight(labels, 3, "sqrt", 10).tolist() == pytest.approx([(1 / 3) ** 0.5, 3 ** 0.5, 2.0])
    assert label_pos_weight(labels, 3, "none", 10) is None
    p = torch.sigmoid(log_odds(label_prior(labels, 3)))
    assert p.tolist() == pytest.approx([3 / 4, 1 / 4, 1 / 5])  # a label never seen: 1 / (n + 1)
    assert label_prior(labels, 3).tolist() == pytest.approx(p.tolist())


@pytest.mark.slow
def test_the_head_starts_at_the_label_priors(tiny_bert, synthetic_folder, tmp_path):
    from data import load_examples

    out = tmp_path / "run"
    train.main(tiny_train_args(tiny_bert, synthetic_folder, out, "--epochs", "1", "--head-bias", "prior", "--lr", "1e-9"))
    splits, names = load_examples(synthetic_folder, log=lambda *a: None)
    bias = torch.load(out / "last.pt", weights_only=True)["model"]["head.bias"]
    assert bias.tolist() == pytest.approx(log_odds(label_prior(splits["train"].labels, len(names))).tolist(),
                                        abs=1e-4)


@pytest.mark.slow
def test_patience_stops_a_run_that_no_longer_improves_and_a_resume_stops_at_once(tiny_bert, synthetic_folder,
                                                                                  tmp_path, capsys):
    out = tmp_path / "run"
    flags = tiny_train_args(tiny_bert, synthetic_folder, out, "--epochs", "12", "--patience", "1", "--lr", "1e-9",
                            "--select-metric", "macro_f1")
    summary = train.main(flags)  # a learning rate of 1e-9 learns nothing: epoch 2 is no better than epoch 1
    assert summary["best_epoch"] == 1 and len(epochs_of(out)) == 2
    assert "early stop: no better macro_f1 in the 1 epochs since epoch 1 (--patience 1)" in capsys.readouterr().out
    train.main(["--resume", "auto", "--output-dir", str(out)])
    assert len(epochs_of(out)) == 2


def rows_with_a_rare_label(n: int, rare_positives: int, seed: int) -> list[tuple[str, list[str]]]:
    """The synthetic task, with its last label present in only `rare_positives` of the `n` texts."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        labels = [label for label in LABELS[:-1] if rng.random() < 0.3] + ([LABELS[-1]] if i < rare_positives else [])
        words = rng.choices(FILLER, k=rng.randint(4, 12)) + [rng.choice(KEYWORDS[label]) for label in labels]
        rng.shuffle(words)
        rows.append((" ".join(words), labels))
    rng.shuffle(rows)
    return rows


@pytest.mark.slow
def test_square_root_positive_weights_learn_a_label_from_5_examples_better_than_plain_bce(tiny_bert, tmp_path):
    """480 training texts, 5 of them with the rare label; 200 validation texts, 40 with it. At the same budget,
    `--pos-weight sqrt` (its weight: sqrt(475 / 5), about 9.7) predicts it at 0.5 (F1 0.49 to 0.81 in runs that
    differed only by the machine or its load: the rounding of a 5-example label compounds over 15 epochs, hence
    the bar of 0.3) and gives its validation positives higher probabilities than plain BCE does. BCE's F1 was
    0.0 in most runs, but 0.69 in one: that it never learns the label is too close to the edge to be asserted,
    as is `--loss db` (F1 0.77 in one run, 0.0 in another). Mean probability on the 40 positives, two runs:
    BCE 0.016 and 0.021, square-root weights 0.637 and 0.554. Both start the head's bias at 0, as when these
    figures were measured (the default since is each label's log-odds)."""
    data = tmp_path / "data"
    data.mkdir()
    write_flag_tsv(data / "train.tsv", rows_with_a_rare_label(480, 5, seed=1))
    write_flag_tsv(data / "validation.tsv", rows_with_a_rare_label(200, 40, seed=2))
    rare_f1, rare_prob = {}, {}
    for name, flags in (("bce", ["--pos-weight", "none"]), ("sqrt", ["--pos-weight", "sqrt"])):
        out = tmp_path / name
        train.main(tiny_train_args(tiny_bert, str(data), out, "--epochs", "15", "--seed", "1", "--head-bias", "zero",
                                   *flags))
        predictions = tmp_path / f"{name}.jsonl"
        result = evaluate.main(["--ckpt", str(out / "last.pt"), "--split", "validation", "--output",
                                str(tmp_path / f"{name}.json"), "--save-predictions", str(predictions)])
        rare_f1[name] = next(row["f1"] for row in result["per_label"] if row["label"] == LABELS[-1])
        records = [json.loads(line) for line in predictions.read_text().splitlines()]
        positives = [r["probabilities"][LABELS[-1]] for r in records if LABELS[-1] in r["gold"]]
        assert len(positives) == 40
        rare_prob[name] = sum(positives) / len(positives)
    assert rare_f1["sqrt"] > 0.3 and rare_prob["sqrt"] > rare_prob["bce"], (rare_f1, rare_prob)


@pytest.mark.slow
def test_a_distribution_balanced_run_evaluates_from_its_checkpoint_alone(tiny_bert, synthetic_folder, tmp_path):
    """The loss needs the training labels' priors: the checkpoint keeps them, so evaluate.py reproduces the
    logged validation loss without the training data."""
    out = tmp_path / "run"
    train.main(tiny_train_args(tiny_bert, synthetic_folder, out, "--epochs", "2", "--loss", "db"))
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["label_prior"].shape == (len(best["label_names"]),)
    logged = next(r for r in epochs_of(out) if r["step"] == best["progress"]["step"])
    result = evaluate.main(["--ckpt", str(out / "best.pt"), "--split", "validation", "--output", str(tmp_path / "m.json")])
    assert result["metrics"]["loss"] == pytest.approx(logged["val_loss"], rel=1e-5)
    assert result["metrics"]["micro_f1"] == pytest.approx(logged["val_micro_f1"], abs=1e-6)
