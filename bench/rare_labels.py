"""Rare labels: a long-tailed version of the shared SemEval tweets, recipes compared on it, and a TF-IDF + linear
SVM baseline on the same splits.

    python bench/rare_labels.py --variant="" --variant="--pos-weight none" --variant="--pos-weight none --loss asl"
    python bench/rare_labels.py --svm-only

The training split keeps only 5, 10, 20 and 50 positive examples of love, pessimism, surprise and trust (the
other tweets that carry them are left out, so no positive is relabelled as a negative); the validation split
is the shipped one (684 tweets carved with --split-seed 0), untouched. Each variant is one train.py run
(MiniLM, 5 epochs, seed 42); its best.pt is scored on validation at threshold 0.5 and with its tuned
thresholds: micro-F1, macro-F1 over all 11 labels, and macro-F1 over the four rare ones.
"""
import argparse
import contextlib
import csv
import io
import os
import random
import shlex
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RARE = {"love": 5, "pessimism": 10, "surprise": 20, "trust": 50}


def write_long_tail(source: str, out: str, seed: int = 0) -> dict:
    """train.tsv (long-tailed) and validation.tsv in `out`; returns each label's training positives."""
    from data import load_examples

    splits, names = load_examples(source, val_fraction=0.1, split_seed=0, log=lambda *a: None)
    train = splits["train"]
    rng = random.Random(seed)
    dropped, protected = set(), set()
    for name, cap in sorted(RARE.items(), key=lambda item: item[1]):
        label = names.index(name)
        positives = [i for i in range(len(train)) if label in train.labels[i] and i not in dropped]
        kept = [i for i in positives if i in protected]
        others = [i for i in positives if i not in protected]
        rng.shuffle(others)
        kept += others[:max(0, cap - len(kept))]
        dropped |= set(positives) - set(kept)
        protected |= set(kept)
    train = train.select([i for i in range(len(train)) if i not in dropped])
    os.makedirs(out, exist_ok=True)
    for split, examples in (("train", train), ("validation", splits["validation"])):
        with open(os.path.join(out, f"{split}.tsv"), "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
            writer.writerow(["id", "text", *names])
            for example_id, text, labels in zip(examples.ids, examples.texts, examples.labels):
                writer.writerow([example_id, text.replace("\t", " ").replace("\n", " "),
                                 *[int(j in labels) for j in range(len(names))]])
    counts = np.bincount([j for row in train.labels for j in row], minlength=len(names))
    return {"train_examples": len(train), "positives": dict(zip(names, counts.tolist()))}


def scores(probs, targets, thresholds, names) -> dict:
    from engine.metrics import f1_scores, per_label_report

    per_label = {row["label"]: row["f1"] for row in per_label_report(probs, targets, thresholds, names)}
    return {**f1_scores(probs, targets, thresholds), "rare_macro_f1": float(np.mean([per_label[n] for n in RARE]))}


def run_variant(data: str, common: list[str], variant: str, out: str) -> dict:
    import train
    from data import load_examples
    from engine.serving.predictor import load_predictor

    argv = common + ["--data", data] + shlex.split(variant) + ["--output-dir", out, "--overwrite"]
    with contextlib.redirect_stderr(io.StringIO()):
        summary = train.main(argv)
    predictor = load_predictor(os.path.join(out, "best.pt"))
    splits, _ = load_examples(data, label_names=predictor.label_names, log=lambda *a: None)
    probs, targets, _ = predictor.probabilities(splits["validation"])
    names = predictor.label_names
    return {"at_0.5": scores(probs, targets, 0.5, names),
            "tuned": scores(probs, targets, predictor.state["thresholds"]["per_label"], names),
            "epoch": summary["best_epoch"]}


def svm_baselines(data: str) -> dict:
    """TF-IDF (words and bigrams, sublinear tf) + one linear SVM per label, with and without class weights."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    from data import load_examples

    splits, names = load_examples(data, log=lambda *a: None)
    multi_hot = {s: np.array([[int(j in row) for j in range(len(names))] for row in splits[s].labels])
                 for s in ("train", "validation")}
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vectorizer.fit_transform(splits["train"].texts)
    x_val = vectorizer.transform(splits["validation"].texts)
    results = {}
    for weight in (None, "balanced"):
        svm = OneVsRestClassifier(LinearSVC(C=1.0, class_weight=weight)).fit(x_train, multi_hot["train"])
        predicted = (svm.decision_function(x_val) > 0).astype(np.float64)  # 0/1 "probabilities" at threshold 0.5
        results[f"TF-IDF + linear SVM, class_weight={weight}"] = scores(predicted, multi_hot["validation"], 0.5, names)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=os.path.join(ROOT, "..", "shared", "data", "semeval2018_ec"))
    p.add_argument("--model", default="minilm")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--variant", action="append", default=None, help="extra train.py flags; repeat")
    p.add_argument("--svm-only", action="store_true")
    p.add_argument("--out", default=None, help="where the data and runs go (default: a temporary folder)")
    args = p.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="rare-labels-")
    data = os.path.join(out, "data")
    made = write_long_tail(args.source, data)
    print(f"long-tailed training split: {made['train_examples']} tweets; positives {made['positives']}", flush=True)
    print(f"{'variant':44s} {'micro':>6s} {'macro':>6s} {'rare':>6s} | tuned: {'micro':>6s} {'macro':>6s} {'rare':>6s}"
          f" {'epoch':>5s}", flush=True)
    for name, r in svm_baselines(data).items():
        print(f"{name:44s} {r['micro_f1']:6.4f} {r['macro_f1']:6.4f} {r['rare_macro_f1']:6.4f}", flush=True)
    if args.svm_only:
        return
    common = ["--model", args.model, "--epochs", str(args.epochs)]
    for i, variant in enumerate(args.variant or [""]):
        r = run_variant(data, common, variant, os.path.join(out, f"run{i}"))
        a, t = r["at_0.5"], r["tuned"]
        print(f"{variant or '(defaults)':44s} {a['micro_f1']:6.4f} {a['macro_f1']:6.4f} {a['rare_macro_f1']:6.4f} | "
              f"tuned: {t['micro_f1']:6.4f} {t['macro_f1']:6.4f} {t['rare_macro_f1']:6.4f} {r['epoch']:5d}", flush=True)


if __name__ == "__main__":
    main()
