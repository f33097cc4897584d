"""Refit a fused run's head (--features both) over a grid of --embedding-scale and --svm-c on its checkpoint's own
encoder, each scored on the run's validation laws: how those defaults were chosen (docs/results.md, EU law). The
training and validation embeddings are computed once; each refit takes the SVMs' time alone.

    python bench/fused_grid.py --ckpt runs/laws/best.pt --scale 1 2 3 --c 0.5 1 2
"""
import argparse
import os
import sys

import numpy as np
import scipy.sparse as sp
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data import build_loader, load_examples  # noqa: E402
from data.tokenized import LongDoc, tokenize  # noqa: E402
from data.tfidf import TfidfVocabulary  # noqa: E402
from engine.amp import dtype_from_name  # noqa: E402
from engine.checkpoint import load_checkpoint  # noqa: E402
from engine.training.head_fit import collect_embeddings, fit_head, fused_features  # noqa: E402
from engine.metrics import multilabel_metrics  # noqa: E402
from model.classifier import build_from_checkpoint  # noqa: E402

COLUMNS = ("micro_f1", "macro_f1", "precision_at_1", "precision_at_5", "r_precision_at_5", "ndcg_at_5")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--scale", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    p.add_argument("--c", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    args = p.parse_args()
    state = load_checkpoint(args.ckpt)
    cfg, names = state["config"], state["label_names"]
    if cfg["features"] == "encoder":
        raise SystemExit(f"{args.ckpt}: not a fused run (--features {cfg['features']})")
    model, tokenizer = build_from_checkpoint(state)
    vocabulary = TfidfVocabulary.from_state(state["tfidf"])
    splits, _ = load_examples(cfg["data"], cfg["data_config"], cfg["text_column"], cfg["label_column"],
                              cfg["label_separator"], label_names=names, val_fraction=cfg["val_fraction"],
                              split_seed=cfg["split_seed"], max_train_samples=cfg["max_train_samples"],
                              max_eval_samples=cfg["max_eval_samples"], log=lambda *a: None)
    device, amp = torch.device("cpu"), dtype_from_name(cfg["amp_dtype"])
    sets, embeddings = {}, {}
    for split in ("train", "validation"):
        sets[split] = tokenize(splits[split], tokenizer, cfg["max_length"], len(names), cfg["cache_dir"] or None,
                               LongDoc.from_config(cfg), vocabulary)
        loader = build_loader(sets[split], cfg["eval_batch_size"], tokenizer.pad_token_id, False)
        embeddings[split] = collect_embeddings(model, loader, device, amp)
    targets = np.zeros((len(splits["validation"]), len(names)), dtype=np.int8)
    for row, labels in enumerate(splits["validation"].labels):
        targets[row, labels] = 1
    print(f"{args.ckpt}: {len(names)} labels, {len(vocabulary):,} terms, {len(splits['train'])} training laws, "
          f"{len(targets)} validation laws (trained with scale {cfg['embedding_scale']}, C {cfg['svm_c']})")
    print(f"{'scale':>6s} {'C':>5s} " + " ".join(f"{c:>16s}" for c in COLUMNS))
    prior = state["label_prior"]
    for scale in args.scale:
        train_x = fused_features(sets["train"].tfidf, len(vocabulary), embeddings["train"], scale)
        val_x = fused_features(sets["validation"].tfidf, len(vocabulary), embeddings["validation"], scale)
        for c in args.c:
            tfidf, embedding, bias = fit_head(train_x, splits["train"].labels, c, prior, torch.get_num_threads(),
                                              len(vocabulary), cfg["tfidf_prune"], cfg["svm_solver"])
            block = sp.csr_matrix(tuple(tfidf[k].numpy() for k in ("tfidf_weights", "tfidf_labels", "tfidf_offsets")),
                                  shape=(max(1, len(vocabulary)), len(names)))
            logits = val_x[:, :block.shape[0]] @ block + val_x[:, block.shape[0]:] @ embedding + bias
            metrics = multilabel_metrics(1 / (1 + np.exp(-logits)), targets, cfg["threshold"])
            print(f"{scale:6.2f} {c:5.2f} " + " ".join(f"{metrics[k]:16.4f}" for k in COLUMNS), flush=True)


if __name__ == "__main__":
    main()
