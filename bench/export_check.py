"""Exported models against the checkpoint they came from, on real texts, in one run on this CPU.

    python bench/export_check.py --ckpt runs/minilm-semeval/best.pt
    python bench/export_check.py --ckpt runs/mpnet-semeval/best.pt --n 200 --int8

1. Agreement: the largest difference of a probability against predict.py on the checkpoint in fp32, over the first
   --n texts of the run's validation split: transformers' pipeline on the HF folder (texts that fit one window),
   and predict.py on the HF folder and on the ONNX folder (every text, long ones as windows).
2. Speed (texts/s, the model alone on the same padded batches of those texts, batch 1 and 32): PyTorch eager in
   fp32 (PyTorch's and transformers' own kernels, as the export runs), PyTorch as predict.py runs the checkpoint
   (this repository's CPU fast paths, the run's autocast), onnxruntime fp32, and with --int8 onnxruntime on
   weights quantized to int8 (dynamic quantization), with its micro/macro-F1 on the whole validation split
   against fp32's (tuned thresholds).
"""
import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import export  # noqa: E402
from data.tfidf import TfidfVocabulary  # noqa: E402
from engine.serving.evaluate import load_eval_examples  # noqa: E402
from engine.serving.predictor import load_predictor  # noqa: E402
from engine.metrics import multilabel_metrics  # noqa: E402
from engine.thresholds import choose_thresholds  # noqa: E402
from model.export_format import ONNX_FILE  # noqa: E402
from model.export_read import load_exported  # noqa: E402
from model.export_write import serving_model  # noqa: E402


def padded_batches(tokenizer, texts, max_length, size, tfidf=None):
    """(input_ids, attention_mask), and with a fused model's vocabulary (tfidf_ids, tfidf_values) too."""
    for start in range(0, len(texts), size):
        enc = tokenizer(texts[start:start + size], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        vectors = () if tfidf is None else tuple(map(torch.from_numpy, tfidf.batch(texts[start:start + size])))
        yield enc["input_ids"], enc["attention_mask"], *vectors


def texts_per_second(forward, batches, n_texts, repeats: int = 2) -> float:
    with torch.no_grad():
        forward(*batches[0])
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for batch in batches:
                forward(*batch)
            best = min(best, time.perf_counter() - start)
    return n_texts / best


def pipeline_difference(folder, remote, texts, reference, label_names):
    from transformers import pipeline

    start = time.perf_counter()
    pipe = pipeline("text-classification", model=folder, top_k=None, trust_remote_code=remote)
    print(f"  pipeline() loads the HF folder in {time.perf_counter() - start:.2f} s "
          f"({'with' if remote else 'without'} trust_remote_code)")
    served = pipe(texts)
    found = np.array([[{d["label"]: d["score"] for d in row}[name] for name in label_names] for row in served])
    return float(np.abs(found - reference).max())


def quantized_folder(onnx_folder: str, target: str) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    shutil.copytree(onnx_folder, target)
    os.remove(os.path.join(target, ONNX_FILE))
    quantize_dynamic(os.path.join(onnx_folder, ONNX_FILE), os.path.join(target, ONNX_FILE), weight_type=QuantType.QInt8)
    return target


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--n", type=int, default=200, help="validation texts compared and timed")
    p.add_argument("--int8", action="store_true", help="also onnxruntime on int8 weights (dynamic quantization)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="export-check-")
    print(f"{args.ckpt}; CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    folders, remote = {}, False
    for fmt in ("hf", "onnx"):
        start = time.perf_counter()
        result = export.main(["--ckpt", args.ckpt, "--out", os.path.join(work, fmt), "--format", fmt])
        folders[fmt], remote = os.path.join(work, fmt), remote or result["remote_code"]
        print(f"  export {fmt}: {time.perf_counter() - start:.1f} s, {result['class']}, "
              f"{sum(os.path.getsize(os.path.join(folders[fmt], f)) for f in os.listdir(folders[fmt])) / 1e6:.0f} MB")
    checkpoint = load_predictor(args.ckpt, amp="off")
    cfg, names = checkpoint.config, checkpoint.label_names
    examples, source = load_eval_examples({"data": None, "split": "validation", "max_eval_samples": None}, cfg, names)
    sample = examples.select(range(min(args.n, len(examples))))
    reference, _, _ = checkpoint.probabilities(sample)
    lengths = [len(ids) for ids in checkpoint.tokenizer(sample.texts)["input_ids"]]
    fits = [i for i, n in enumerate(lengths) if n <= cfg["max_length"]]

    print(f"\n1. Agreement with the checkpoint (fp32), {len(sample)} texts of {source}, max abs difference:")
    if checkpoint.state["tfidf"] and checkpoint.model.fused.ready:  # noqa: the fused head predicts
        print("  pipeline on the HF folder: cannot pass the fused head's TF-IDF inputs (README, Export and serving)")
    else:
        print(f"  pipeline on the HF folder ({len(fits)} texts in one window): "
              f"{pipeline_difference(folders['hf'], remote, [sample.texts[i] for i in fits], reference[fits], names):.2e}")
    for fmt in ("hf", "onnx"):
        probs, _, _ = load_predictor(folders[fmt]).probabilities(sample)
        print(f"  predict.py on the {fmt} folder ({len(sample)} texts): {np.abs(probs - reference).max():.2e}")

    print("\n2. Speed, texts/s (the model alone, the same padded batches):")
    eager, tokenizer = serving_model(checkpoint.state)
    fast = load_predictor(args.ckpt)
    onnx = load_exported(folders["onnx"])[0]
    routes = {"PyTorch eager fp32": lambda ids, mask, *tfidf: eager(ids, mask, None, None, None, *tfidf),
              f"PyTorch, predict.py's path ({fast.amp_dtype or 'fp32'})":
                  lambda ids, mask, *tfidf: autocast_forward(fast, ids, mask, *tfidf),
              "onnxruntime fp32": lambda ids, mask, *tfidf: onnx(ids, mask, None, None, None, *tfidf)}
    if args.int8:
        int8 = load_exported(quantized_folder(folders["onnx"], os.path.join(work, "int8")))[0]
        routes["onnxruntime int8"] = lambda ids, mask, *tfidf: int8(ids, mask, None, None, None, *tfidf)
    fused = checkpoint.state["tfidf"] and checkpoint.model.fused.ready
    vocabulary = TfidfVocabulary.from_state(checkpoint.state["tfidf"]) if fused else None
    print(f"  {'route':40s} {'batch 1':>9s} {'batch 32':>9s} {'vs eager':>9s}")
    base = None
    for name, forward in routes.items():
        rates = [texts_per_second(forward, list(padded_batches(tokenizer, sample.texts[:n], cfg["max_length"], size,
                                                               vocabulary)),
                                  n) for size, n in ((1, min(64, len(sample))), (32, len(sample)))]
        base = base or rates
        print(f"  {name:40s} {rates[0]:9.1f} {rates[1]:9.1f} {rates[0] / base[0]:5.2f}x / {rates[1] / base[1]:.2f}x",
              flush=True)
    if args.int8:
        print(f"\n3. int8 against fp32 on all {len(examples)} texts of {source} (tuned thresholds):")
        thresholds = choose_thresholds("tuned" if checkpoint.state["thresholds"] else None,
                                       checkpoint.state["thresholds"], cfg["threshold"])
        for fmt, folder in (("fp32", folders["onnx"]), ("int8", os.path.join(work, "int8"))):
            probs, targets, _ = load_predictor(folder).probabilities(examples)
            m = multilabel_metrics(probs, targets, thresholds)
            print(f"  onnxruntime {fmt}: micro_f1 {m['micro_f1']:.4f}  macro_f1 {m['macro_f1']:.4f}")
    shutil.rmtree(work, ignore_errors=True)


def autocast_forward(predictor, ids, mask, *tfidf):
    from engine.amp import autocast

    with autocast(predictor.device, predictor.amp_dtype):
        return predictor.model(ids, mask, None, None, None, *tfidf)


if __name__ == "__main__":
    main()
